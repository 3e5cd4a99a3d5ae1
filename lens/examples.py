"""Example prompts that show something worth explaining in a talk or a class."""

EXAMPLES: dict[str, str] = {
    "Capital of France": "The capital of France is",
    "Counting": "one, two, three, four, five,",
    "Repeated names": "When Mary and John went to the store, John gave a drink to",
    "Translation": "English: cat\nFrench: chat\nEnglish: dog\nFrench:",
    "Code": "def add(a, b):\n    return",
    "Opposites": "The opposite of hot is cold. The opposite of up is",
}
DEFAULT_PROMPT = EXAMPLES["Capital of France"]
