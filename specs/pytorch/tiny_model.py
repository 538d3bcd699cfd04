import torch

torch.manual_seed(0)
model = torch.nn.Linear(3, 1)
print(f"torch {torch.__version__}: a tiny model says", round(model(torch.ones(3)).item(), 4))
