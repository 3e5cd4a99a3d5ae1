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


# Corpora for the projection page: several sentences sharing a word used in different senses
# ("How contextual are contextualized word representations"). name -> (word, sentences).
# The word is one token in both bundled tokenizers and never the first token of a sentence.
CORPORA: dict[str, tuple[str, list[str]]] = {
    "bank: river or money": ("bank", [
        "We sat on the bank of the river and watched the boats.",
        "She went to the bank to deposit her salary.",
        "The bank raised its interest rates again this year.",
        "Fish gathered near the muddy bank after the rain.",
        "Thieves robbed a bank in the middle of the day.",
        "The grassy bank was covered in wild flowers.",
    ]),
    "light: noun, adjective, verb": ("light", [
        "Please turn off the light when you leave.",
        "The box was light enough for a child to carry.",
        "They light candles every evening in winter.",
        "Morning light filled the quiet kitchen.",
        "She wore a light jacket on the warm day.",
        "The speed of light is a physical constant.",
    ]),
    "play: games, theatre, music": ("play", [
        "The children play football after school.",
        "We saw a play by Shakespeare at the theatre.",
        "Can you play the piano or the guitar?",
        "The new play opens on Broadway next week.",
        "Dogs love to play in the snow.",
        "Press play to start the video.",
    ]),
}

# The sense of the word in each sentence of a corpus, in the corpus's order (charts name the senses with them).
SENSES: dict[str, tuple[str, ...]] = {
    "bank: river or money": ("river", "money", "money", "river", "money", "river"),
}

# Clean / corrupted prompt pairs for activation patching: (clean, corrupted, target, foil). Each pair has
# the same number of tokens in the bundled model, and target and foil are one token each.
PATCH_PAIRS: dict[str, tuple[str, str, str, str]] = {
    "Factual recall: the Eiffel Tower / the Colosseum": (
        "The Eiffel Tower is located in the city of", "The Colosseum is located in the city of", " Paris", " Rome"),
    "A capital: France / Italy": ("The capital of France is", "The capital of Italy is", " Paris", " Rome"),
    "A landmark's country: the Great Wall / the Taj Mahal": (
        "The Great Wall is in the country of", "The Taj Mahal is in the country of", " China", " India"),
    "Indirect object: who gets the drink": (
        "When Mary and John went to the store, John gave a drink to",
        "When Mary and John went to the store, Mary gave a drink to", " Mary", " John"),
}


# Translation prompts for the language of each layer (Wendler et al. 2024): name -> (prompt, words to follow:
# the answer in the target language, then the English word). Each prompt stops at the opening quote of the answer.
TRANSLATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "French → Chinese: eau (water)": (
        'Français: "chien" - 中文: "狗"\nFrançais: "maison" - 中文: "房子"\nFrançais: "eau" - 中文: "',
        ("水", "water")),
    "French → Russian: eau (water)": (
        'Français: "chien" - Русский: "собака"\nFrançais: "maison" - Русский: "дом"\nFrançais: "eau" - Русский: "',
        ("вода", "water")),
    "French → German: livre (book)": (
        'Français: "fleur" - Deutsch: "Blume"\nFrançais: "montagne" - Deutsch: "Berg"\nFrançais: "livre" - Deutsch: "',
        ("Buch", "book")),
}
