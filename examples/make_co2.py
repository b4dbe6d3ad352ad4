"""Make examples/data/co2_mauna_loa_monthly.csv: the Mauna Loa CO2 record, monthly means.

Run once (``pip install statsmodels``; the CSV is shipped):

    python examples/make_co2.py

Source: ``statsmodels.datasets.co2``, weekly CO2 concentrations (ppm) from flask samples
at Mauna Loa Observatory, Hawaii, March 1958 - December 2001: Keeling, C.D. and T.P.
Whorf (2004), "Atmospheric CO2 concentrations derived from flask air samples at sites in
the SIO network", Trends: A Compendium of Data on Global Change, CDIAC, Oak Ridge
National Laboratory. Public domain (statsmodels' ``COPYRIGHT`` note says so).

The weekly values are averaged per calendar month (missing weeks skipped; a month with no
sample at all, if any, is filled by linear interpolation between its neighbours, and
marked in the ``filled`` column). ``month`` (1..12) is written too: a covariate a
forecaster may read.
"""

from __future__ import annotations

from pathlib import Path

import statsmodels.datasets.co2 as co2

OUT = Path(__file__).resolve().parent / "data" / "co2_mauna_loa_monthly.csv"


def main() -> None:
    weekly = co2.load_pandas().data["co2"]
    monthly = weekly.resample("MS").mean()
    filled = monthly.isna()
    monthly = monthly.interpolate()
    with open(OUT, "w", encoding="utf-8") as f:
        f.write("date,co2,month,filled\n")
        for stamp, value in monthly.items():
            f.write(f"{stamp:%Y-%m},{value:.3f},{stamp.month},{int(filled[stamp])}\n")
    print(f"wrote {OUT} ({len(monthly)} months, {int(filled.sum())} filled)")


if __name__ == "__main__":
    main()
