"""Step parameters, recipes and batch runs over core."""
