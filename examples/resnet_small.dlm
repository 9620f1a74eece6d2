# examples/resnet_small.dlm — a small residual CNN for MNIST: two residual blocks (He et al. 2016).
# conv - bn - relu - conv - bn, added to the input, then relu.
layer res_block(x: f32[B, h, w, c]) {
  f = x |> conv2d(c, kernel: 3, padding: "same") |> batch_norm |> relu |> conv2d(c, kernel: 3, padding: "same") |> batch_norm
  return relu(residual(x, f))
}

model resnet_small {
  input x: f32[B, 28, 28, 1]
  input y: i32[B]

  stem = x |> conv2d(16, kernel: 3, padding: "same") |> batch_norm |> relu |> max_pool2d(2)  # 14 x 14 x 16
  blocks = stem |> res_block |> res_block
  logits = blocks |> global_avg_pool |> dense(10)

  output probs = softmax(logits)
  output pred = argmax(logits, axis: -1)
  loss = softmax_cross_entropy(logits, y)
  metric accuracy = mean(pred == y)

  train {
    optimizer adam(lr: 2e-3)
    batch 64
    epochs 3
    seed 7
  }
}
