"""Closed-form costs of a checked graph: per-node aggregation (`model`),
`estimate` at given lengths, the roofline (`roofline`, `hardware`), and
`compare` with exact `crossover`s. Never imports torch."""
