"""Reports: metrics table, paired comparisons and their statistics, paper-shaped tables, plots, costs."""
