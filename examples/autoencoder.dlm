# examples/autoencoder.dlm — a dense autoencoder: 784 -> 32 -> 784, trained to reproduce MNIST digits.
model autoencoder {
  input x: f32[B, 784]
  input y: i32[B]  # unused by the loss; kept so --data mnist fits the model

  code = x |> dense(128) |> relu |> dense(32) |> relu
  recon = code |> dense(128) |> relu |> dense(784, init: xavier_uniform) |> sigmoid

  output reconstruction = recon
  output embedding = code
  loss = mse(recon, x)
  metric error = mean(abs(recon - x))

  train {
    optimizer adam(lr: 1e-3)
    batch 64
    epochs 5
    seed 7
  }
}
