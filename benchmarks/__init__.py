"""Load benchmark: omnirelay as a ratio to a bare relay floor measured in the same run.

python -m benchmarks.run
"""
