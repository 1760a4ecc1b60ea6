"""Text side: the CLIP tokenizer, prompt templates, label cleaning and the persistent label bank."""
