# examples/mnist_mlp.dlm — a two-hidden-layer perceptron for MNIST
model mnist_mlp {
  input x: f32[B, 784]  # B is a symbolic dimension, bound at run time
  input y: i32[B]  # class labels 0..9

  h = x |> dense(256) |> relu |> dense(128) |> relu
  logits = dense(h, 10)

  output probs = softmax(logits)
  output pred = argmax(logits, axis: -1)
  loss = softmax_cross_entropy(logits, y)
  metric accuracy = mean(pred == y)

  train {
    optimizer adam(lr: 1e-3)
    batch 64
    epochs 3
    shuffle true
    seed 1
  }
}
