"""llmtally: exact LLM token accounting."""
