"""Mining stages: plain functions and small classes over files, Arrow tables and NumPy arrays.

Nothing here imports Ray; `pipeline/` decides where each stage runs.
"""
