"""HTTP clients for the two services TeckoChecker talks to: OpenAI (batches) and Keboola (jobs)."""
