"""`auzap-actors bench <scenario>`: commands that start what they need and print figures.

Benchmarks are never timed tests (the machines are shared and noisy): every target is a ratio
measured side by side in one run, over interleaved rounds, reported as median and spread.
"""
