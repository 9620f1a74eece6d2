# Initializers: fns of (shape, fan_in, fan_out), deterministic under the model's seed.
# A number is an initializer too: `param b: f32[n] = 0.1` fills with 0.1. Those with settings
# of their own are given them by name: `dense(10, init: random_normal(std: 0.02))`.

fn zeros(shape, fan_in, fan_out) = fill(shape, 0.0)
fn ones(shape, fan_in, fan_out) = fill(shape, 1.0)

# Standard normal samples by the Box-Muller transform.
fn normal(shape) = sqrt(-2 * log(1 - uniform(shape))) * cos(6.283185307179586 * uniform(shape))

fn he_normal(shape, fan_in, fan_out) = normal(shape) * sqrt(2 / fan_in)
fn he_uniform(shape, fan_in, fan_out) = (2 * uniform(shape) - 1) * sqrt(6 / fan_in)
fn lecun_normal(shape, fan_in, fan_out) = normal(shape) * sqrt(1 / fan_in)
fn xavier_normal(shape, fan_in, fan_out) = normal(shape) * sqrt(2 / (fan_in + fan_out))
fn xavier_uniform(shape, fan_in, fan_out) = (2 * uniform(shape) - 1) * sqrt(6 / (fan_in + fan_out))
fn glorot_normal(shape, fan_in, fan_out) = xavier_normal(shape, fan_in, fan_out)
fn glorot_uniform(shape, fan_in, fan_out) = xavier_uniform(shape, fan_in, fan_out)
fn kaiming_normal(shape, fan_in, fan_out) = he_normal(shape, fan_in, fan_out)
fn kaiming_uniform(shape, fan_in, fan_out) = he_uniform(shape, fan_in, fan_out)

fn random_normal(shape, fan_in, fan_out, std = 0.05) = normal(shape) * std
fn random_uniform(shape, fan_in, fan_out, limit = 0.05) = (2 * uniform(shape) - 1) * limit
