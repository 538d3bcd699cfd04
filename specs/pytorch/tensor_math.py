import torch

x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
print(f"torch {torch.__version__}: x @ x.T =", (x @ x.T).tolist())
