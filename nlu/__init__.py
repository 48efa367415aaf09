"""Understanding one text: language, intent with confidence and ranking, entities, knowledge-base matches.

Pure functions of (model, text); this room imports nothing else of Guichet's.
"""
