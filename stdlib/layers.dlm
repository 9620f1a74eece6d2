# Layers own parameters; each call creates its own, named after the binding it is made under.

layer dense(x: f32[..., n], units: int, init = he_normal) {
  param w: f32[n, units] = init
  param b: f32[units] = zeros @no_decay
  return x @ w + b
}

# Inverted dropout: scale the kept units at training time, so inference is the identity.
fn dropout(x, rate: float) {
  if training {
    keep = uniform(shape(x)) >= rate
    return keep ? x / (1 - rate) : 0.0
  } else {
    return x
  }
}
