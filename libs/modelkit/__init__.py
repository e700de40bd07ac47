"""Code the example models' python steps share: packed beside each step's model.py in its artifact."""
