"""Inverse-rendering fits of the ICT model to real images, and the texture bank built from them."""
