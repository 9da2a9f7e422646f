"""Voice queries: audio files decoded and checked (``audio``), then Whisper through
faster-whisper or OpenAI's package, with the rules for what is trusted (``recognizer``)."""
