"""HTTP: the GraphQL endpoint and its cached-answer front, downloads, health and metrics, the pages."""
