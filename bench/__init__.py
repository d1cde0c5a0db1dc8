"""Benchmarks of bentogate's serving path; ``python -m bench`` reruns all of them.

Figures and ratios go to ``bench/results/`` (JSON, a markdown table and a PNG). See
``bench/README.md`` for what each part measures and for the regression guard.
"""
