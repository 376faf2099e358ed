"""What a cell costs, one question per module:
counting.py: how many parameters and GFLOPs a model has (fvcore or FlopCounterMode, named in every count);
training.py: what a PEFT method adds while it trains (adapters, weight rebuild, one-time SVD, trainable share);
paper_params.py / paper_gflops.py: our trainable counts / GFLOPs next to the paper's claims (saltbench params / cost)."""
