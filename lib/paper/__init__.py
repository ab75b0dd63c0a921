"""The reproducible-paper machinery: execute the notebooks behind the site, cache them by content, publish them.

`python -m paper build` executes every notebook in `notebooks/` with the parameters of a profile
(`notebooks/params/<profile>.yaml`), skipping those whose content hash (notebook cells, parameters, the lib/
code they import) matches the last execution, then renders the Quarto site when Quarto is installed.
"""
