"""Answer-quality evaluation: single-domain items, disjoint splits, composed questions, scoring.

Modules: `items` (sources with exact answers, as `Item`s), `splits` (train/test by item id),
`compose` (the paper's MultiExpertQA-P questions), `scoring` (part and question accuracy).
"""
