"""Words: what is read in photos (OCR)."""
