import numpy
import tabulate

from report_helpers import summary_rows

print(tabulate.tabulate(summary_rows(numpy.arange(10)), headers=["statistic", "value"]))
