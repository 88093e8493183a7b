"""What the tests share: factories, the API client, documents, processes, Redis servers of their own."""
