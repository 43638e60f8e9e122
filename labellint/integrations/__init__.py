"""Hooks into other tools: the pytest fixture, the transformers Trainer callback."""
