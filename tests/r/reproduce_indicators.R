# Reproduces a release folder's indicators from its Stata files with the folder's own
# svydesign.R, as a researcher would: every weighted row of indicators.csv is estimated again
# (svymean on the domain's subset for estimate and SE, svyciprop's logit interval with the
# subset design's degrees of freedom, and the same interval by the delta method, "xlogit")
# and written to <out>/r_indicators.csv. Then every
# weighted file is set up as the folder's svyset.do sets it up (the replicate weights with
# their multipliers, or Taylor linearisation on the masked units) and each indicator of the
# file, or the weight where a file has none, is estimated: <out>/r_svyset.csv.
#
# Usage: Rscript tests/r/reproduce_indicators.R <release folder> <out folder>
args <- commandArgs(trailingOnly = TRUE)
folder <- normalizePath(args[1])
out <- normalizePath(args[2])
setwd(folder)
suppressMessages(source("svydesign.R"))

published <- read.csv("indicators.csv", colClasses = c(level = "character"),
                      stringsAsFactors = FALSE)
published <- published[toupper(as.character(published$weighted)) == "TRUE", ]
rows <- lapply(seq_len(nrow(published)), function(i) {
  r <- published[i, ]
  d <- designs[[r$form]]
  v <- d$variables
  keep <- !is.na(v[[r$indicator]])
  if (r$domain != "all") {
    keep <- keep & !is.na(v[[r$domain]]) & as.character(v[[r$domain]]) == r$level
  }
  sub <- subset(d, keep)
  f <- as.formula(paste0("~", r$indicator))
  m <- svymean(f, sub, na.rm = TRUE)
  ci <- suppressWarnings(attr(svyciprop(f, sub, method = "logit"), "ci"))
  # The same interval by the delta method on svymean (no glm iterations to converge).
  xci <- suppressWarnings(attr(svyciprop(f, sub, method = "xlogit", na.rm = TRUE), "ci"))
  data.frame(indicator = r$indicator, domain = r$domain, level = r$level,
             estimate = coef(m)[[1]], se = SE(m)[[1]], ci_low = ci[[1]], ci_high = ci[[2]],
             xlogit_low = xci[[1]], xlogit_high = xci[[2]], df = degf(sub), n = sum(keep))
})
write.csv(do.call(rbind, rows), file.path(out, "r_indicators.csv"), row.names = FALSE)

# svyset.do, in R: the replicate designs where the folder has replicate weights (licensed),
# else Taylor linearisation on stratum and psu without raking (what svyset gives Stata).
svyset <- if (exists("replicate_designs")) replicate_designs else
  lapply(setNames(files, files), function(name) {
    svydesign(ids = ~psu, strata = ~stratum, weights = ~weight, data = read_file(name),
              nest = TRUE)
  })
checks <- lapply(names(svyset), function(name) {
  d <- svyset[[name]]
  vars <- grep("^ind_", names(d$variables), value = TRUE)
  if (length(vars) == 0) vars <- "weight"
  do.call(rbind, lapply(vars, function(v) {
    m <- svymean(as.formula(paste0("~", v)), d, na.rm = TRUE)
    data.frame(file = name, variable = v, setup = class(d)[1], estimate = coef(m)[[1]],
               se = SE(m)[[1]])
  }))
})
write.csv(do.call(rbind, checks), file.path(out, "r_svyset.csv"), row.names = FALSE)
