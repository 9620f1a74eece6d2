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

# Batch normalization over every axis but the last (channels): batch statistics in training,
# running averages (updated with `momentum`) in inference.
layer batch_norm(x: f32[..., c], momentum = 0.9, eps = 1e-5) {
  param gamma: f32[c] = ones @no_decay
  param beta: f32[c] = zeros @no_decay
  state running_mean: f32[c] = zeros
  state running_var: f32[c] = ones
  if training {
    mu = mean(x, axis: leading_axes(x))
    var = mean((x - mu) ^ 2, axis: leading_axes(x))
    running_mean <- momentum * running_mean + (1 - momentum) * mu
    running_var <- momentum * running_var + (1 - momentum) * var
    return gamma * (x - mu) / sqrt(var + eps) + beta
  } else {
    return gamma * (x - running_mean) / sqrt(running_var + eps) + beta
  }
}

# Layer normalization over the last axis.
layer layer_norm(x: f32[..., c], eps = 1e-5) {
  param gamma: f32[c] = ones @no_decay
  param beta: f32[c] = zeros @no_decay
  mu = mean(x, axis: -1, keepdims: true)
  var = mean((x - mu) ^ 2, axis: -1, keepdims: true)
  return gamma * (x - mu) / sqrt(var + eps) + beta
}

# Rows of a learned table, one per integer id.
layer embedding(ids, vocab: int, dim: int, init = xavier_uniform) {
  param table: f32[vocab, dim] = init
  return one_hot(ids, vocab) @ table
}

fn residual(x, fx) = x + fx

# 2-D convolution over NHWC images with a square kernel; padding "valid", "same", or numbers.
layer conv2d(x: f32[..., c], filters: int, kernel = 3, strides = 1, padding = "valid", dilation = 1, groups = 1, init = he_normal) {
  per_group = c / groups
  param w: f32[kernel, kernel, per_group, filters] = init
  param b: f32[filters] = zeros @no_decay
  return conv(x, w, strides: strides, padding: padding, dilations: dilation, groups: groups) + b
}

# Average and maximum over the whole image: [B, H, W, C] to [B, C].
fn global_avg_pool(x) = mean(x, axis: [1, 2])
fn global_max_pool(x) = max(x, axis: [1, 2])
