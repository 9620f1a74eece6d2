# Optimizers: a per-parameter update rule. Hyperparameters are run-time values, so changing them
# needs no recompilation; `t` counts updates from 1.

optimizer sgd(lr = 0.01) {
  step(p, g, t) {
    p <- p - lr * g
  }
}

optimizer momentum(lr = 0.01, mu = 0.9) {
  state v = zeros
  step(p, g, t) {
    v <- mu * v - lr * g
    p <- p + v
  }
}

# Nesterov momentum in the form of CS231n: p += -mu * v_prev + (1 + mu) * v, i.e. p + mu * v - lr * g.
optimizer nesterov(lr = 0.01, mu = 0.9) {
  state v = zeros
  step(p, g, t) {
    v <- mu * v - lr * g
    p <- p + mu * v - lr * g
  }
}

optimizer adagrad(lr = 0.01, eps = 1e-8) {
  state cache = zeros
  step(p, g, t) {
    cache <- cache + g ^ 2
    p <- p - lr * g / (sqrt(cache) + eps)
  }
}

optimizer rmsprop(lr = 1e-3, decay = 0.9, eps = 1e-8) {
  state cache = zeros
  step(p, g, t) {
    cache <- decay * cache + (1 - decay) * g ^ 2
    p <- p - lr * g / (sqrt(cache) + eps)
  }
}

optimizer adam(lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8) {
  state m = zeros
  state v = zeros
  step(p, g, t) {
    m <- beta1 * m + (1 - beta1) * g
    v <- beta2 * v + (1 - beta2) * g ^ 2
    p <- p - lr * (m / (1 - beta1 ^ t)) / (sqrt(v / (1 - beta2 ^ t)) + eps)
  }
}

# Adam with decoupled weight decay (Loshchilov & Hutter), of the weights only: w is 1 for the
# parameters the `weights` selector picks, 0 for biases, norm scales and other @no_decay ones.
optimizer adamw(lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01) {
  state m = zeros
  state v = zeros
  step(p, g, t, w) {
    m <- beta1 * m + (1 - beta1) * g
    v <- beta2 * v + (1 - beta2) * g ^ 2
    p <- p - lr * ((m / (1 - beta1 ^ t)) / (sqrt(v / (1 - beta2 ^ t)) + eps) + w * weight_decay * p)
  }
}
