"""Shipped export recipes, read with importlib.resources (`edgedistill.recipe.builtin_recipe`)."""
