"""The routes of each protocol, one module each. Every route is always there; a model that does not speak a
protocol (a tensor model asked for OpenAI embeddings) gets a 404 that says which protocols it speaks."""
