"""Recipes: methods and pipelines that compose several algorithm families.

They sit above the families (a family imports only the train core), beside
`labeljax.methods`, which registers them by name.
"""
