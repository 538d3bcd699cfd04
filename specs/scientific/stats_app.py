"""Uses scipy (framework-scipy) and numpy (framework-numpy, below it)."""

import numpy
import scipy.stats

sample = numpy.linspace(-3, 3, 601)
print(f"numpy {numpy.__version__}, scipy {scipy.__version__}")
print(f"P(Z < 1.96) = {scipy.stats.norm.cdf(1.96):.4f}; mean of sample = {sample.mean():.3f}")
