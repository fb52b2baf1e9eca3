"""The engine: the only room that knows models, data, metrics and logging together."""
