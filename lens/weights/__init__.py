"""The weight space: which MLP neurons write a token, a neuron's page, and what attention heads copy and compose."""
