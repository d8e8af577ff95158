"""One module per phase. copy and load: gather facts (facts.py), decide the situation, make the recipe
(etl/recipe.py) that the executor runs; deletes.py: the deletedobject feed step both use; transform: dbt."""
