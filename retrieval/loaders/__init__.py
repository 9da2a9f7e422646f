"""Bringing photo collections into the store: Unsplash Lite, Kaggle, Hugging Face
datasets and local folders (``python -m retrieval load`` / ``scripts/load_dataset.py``).
"""
