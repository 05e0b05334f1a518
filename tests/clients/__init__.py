"""Small models written the way public Flax, GPT-2 and RL code writes them, each taking an
initializer namespace (``flax.linen.initializers`` or ``jaxinit``) so that the same model
is initialized both ways and compared leaf by leaf."""
