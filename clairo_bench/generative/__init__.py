"""Machinery shared by the generative methods: the T5 model builder, prefix tries, rank fusion."""
