"""`transformers.Trainer` subclasses and their `TrainingArguments` configs: the base pair, one config/trainer pair
per method, and what they share (state, cards, PEFT, schedules).
"""
