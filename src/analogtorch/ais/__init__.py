"""Analog Interaction Systems: generative models whose sampler is physical dynamics."""
