# Reference values for tests/weight: R `survey` results on public data.
#
# Run from the repository root (needs R with the survey and jsonlite packages, e.g. Debian
# `r-base-core r-cran-survey`):
#     Rscript tests/weight/reference/make_reference.R
# Writes, beside this script: apistrat.csv, apiclus1.csv, apiclus2.csv (rows of the api data
# shipped with `survey`), sim.csv (a simulated stratified cluster sample) and reference.json.
# Tests read only these files, so CI needs no R.
#
# Raking is run to a tight tolerance (R's default epsilon = 1 stops early), so weights compare
# at 1e-8 and the calibration-aware SEs (which use the raked weights) at 1e-10.
suppressMessages({
  library(survey)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
outdir <- if (length(script)) dirname(normalizePath(script)) else "tests/weight/reference"

tight <- list(maxit = 1000, epsilon = 1e-15)

# Write numbers with 17 significant digits so Python reads back the same doubles.
write_exact <- function(df, name) {
  out <- df
  for (col in names(out)) {
    if (is.factor(out[[col]])) out[[col]] <- as.character(out[[col]])
    if (is.double(out[[col]])) out[[col]] <- ifelse(is.na(out[[col]]), NA, sprintf("%.17g", out[[col]]))
  }
  write.csv(out, file.path(outdir, name), row.names = FALSE, na = "", quote = FALSE)
}

stat <- function(x) list(estimate = as.vector(coef(x)), se = as.vector(SE(x)))
stat_ci <- function(x) {
  ci <- confint(x)
  c(stat(x), list(ci_lower = unname(ci[, 1]), ci_upper = unname(ci[, 2])))
}
stat_deff <- function(x) c(stat(x), list(deff = as.vector(deff(x))))
by_stat <- function(x) {
  list(level = as.character(x[[1]]), estimate = unname(coef(x)), se = unname(SE(x)))
}
prop_stat <- function(x, var) {
  list(level = sub(paste0("^", var), "", names(coef(x))), estimate = unname(coef(x)),
       se = unname(SE(x)))
}
ratio_stat <- function(x) list(estimate = unname(drop(coef(x))), se = unname(drop(SE(x))))

data(api)
keep <- c("snum", "dnum", "stype", "sch.wide", "awards", "both", "api00", "api99",
          "enroll", "api.stu")
write_exact(apistrat[, c(keep, "fpc", "pw")], "apistrat.csv")
write_exact(apiclus1[, c(keep, "fpc", "pw")], "apiclus1.csv")
write_exact(apiclus2[, c(keep, "fpc1", "fpc2", "pw")], "apiclus2.csv")

ref <- list(meta = list(r = R.version.string, survey = as.character(packageVersion("survey"))))

# --- Stratified element sample: apistrat ---------------------------------------------------
dstrat <- svydesign(id = ~1, strata = ~stype, weights = ~pw, data = apistrat, fpc = ~fpc)
ref$apistrat <- list(
  mean_api00 = c(stat_ci(svymean(~api00, dstrat)),
                 list(deff = as.vector(deff(svymean(~api00, dstrat, deff = TRUE))))),
  total_enroll = stat_deff(svytotal(~enroll, dstrat, deff = TRUE)),
  ratio_api_stu_enroll = ratio_stat(svyratio(~api.stu, ~enroll, dstrat)),
  by_awards_mean_api00 = by_stat(svyby(~api00, ~awards, dstrat, svymean)),
  by_awards_total_enroll = by_stat(svyby(~enroll, ~awards, dstrat, svytotal)),
  prop_awards = prop_stat(svymean(~awards, dstrat), "awards"),
  jkn_mean_api00 = stat(svymean(~api00, as.svrepdesign(dstrat, type = "JKn"))),
  jkn_total_enroll = stat(svytotal(~enroll, as.svrepdesign(dstrat, type = "JKn"))),
  jkn_by_awards_mean_api00 = by_stat(svyby(~api00, ~awards, as.svrepdesign(dstrat, type = "JKn"),
                                           svymean))
)

# --- One-stage cluster sample: apiclus1 ----------------------------------------------------
dclus1 <- svydesign(id = ~dnum, weights = ~pw, data = apiclus1, fpc = ~fpc)
dclus1_nofpc <- svydesign(id = ~dnum, weights = ~pw, data = apiclus1)
pop.types <- data.frame(stype = c("E", "H", "M"), Freq = c(4421, 755, 1018))
pop.schwide <- data.frame(sch.wide = c("No", "Yes"), Freq = c(1072, 5122))
rclus1 <- rake(dclus1, list(~stype, ~sch.wide), list(pop.types, pop.schwide), control = tight)
pop.totals <- c(`(Intercept)` = 6194, stypeH = 755, stypeM = 1018, sch.wideYes = 5122)
lclus1 <- calibrate(dclus1, ~stype + sch.wide, pop.totals)
bclus1 <- calibrate(dclus1, ~stype + sch.wide, pop.totals, bounds = c(0.85, 1.6),
                    epsilon = 1e-14, maxit = 200)
gclus1 <- calibrate(dclus1, ~stype + sch.wide, pop.totals, bounds = c(0.8, 1.7),
                    calfun = "logit", epsilon = 1e-14, maxit = 200)
jk1 <- as.svrepdesign(dclus1, type = "JK1")
jk1_nofpc <- as.svrepdesign(dclus1_nofpc, type = "JK1")
jk1_raked <- rake(jk1_nofpc, list(~stype, ~sch.wide), list(pop.types, pop.schwide),
                  control = tight)
ref$apiclus1 <- list(
  margins = list(stype = list(E = 4421, H = 755, M = 1018), sch.wide = list(No = 1072, Yes = 5122)),
  mean_api00 = c(stat_ci(svymean(~api00, dclus1)),
                 list(deff = as.vector(deff(svymean(~api00, dclus1, deff = TRUE))))),
  total_enroll = stat_deff(svytotal(~enroll, dclus1, deff = TRUE)),
  ratio_api_stu_enroll = ratio_stat(svyratio(~api.stu, ~enroll, dclus1)),
  by_stype_mean_api00 = by_stat(svyby(~api00, ~stype, dclus1, svymean)),
  by_stype_total_enroll = by_stat(svyby(~enroll, ~stype, dclus1, svytotal)),
  prop_awards = prop_stat(svymean(~awards, dclus1), "awards"),
  nofpc_mean_api00 = stat(svymean(~api00, dclus1_nofpc)),
  raked_weights = unname(weights(rclus1)),
  raked_mean_api00 = stat(svymean(~api00, rclus1)),
  raked_total_enroll = stat(svytotal(~enroll, rclus1)),
  raked_ratio_api_stu_enroll = ratio_stat(svyratio(~api.stu, ~enroll, rclus1)),
  raked_by_stype_mean_api00 = by_stat(svyby(~api00, ~stype, rclus1, svymean)),
  raked_by_awards_mean_api00 = by_stat(svyby(~api00, ~awards, rclus1, svymean)),
  raked_by_awards_total_enroll = by_stat(svyby(~enroll, ~awards, rclus1, svytotal)),
  raked_prop_awards = prop_stat(svymean(~awards, rclus1), "awards"),
  linear_weights = unname(weights(lclus1)),
  linear_mean_api00 = stat(svymean(~api00, lclus1)),
  linear_total_enroll = stat(svytotal(~enroll, lclus1)),
  linear_by_awards_mean_api00 = by_stat(svyby(~api00, ~awards, lclus1, svymean)),
  bounded_weights = unname(weights(bclus1)),
  bounded_mean_api00 = stat(svymean(~api00, bclus1)),
  logit_weights = unname(weights(gclus1)),
  logit_mean_api00 = stat(svymean(~api00, gclus1)),
  jk1_mean_api00 = stat(svymean(~api00, jk1)),
  jk1_total_enroll = stat(svytotal(~enroll, jk1)),
  jk1_nofpc_mean_api00 = stat(svymean(~api00, jk1_nofpc)),
  jk1_nofpc_ratio_api_stu_enroll = ratio_stat(svyratio(~api.stu, ~enroll, jk1_nofpc)),
  jk1_nofpc_by_stype_mean_api00 = by_stat(svyby(~api00, ~stype, jk1_nofpc, svymean)),
  jk1_raked_mean_api00 = stat(svymean(~api00, jk1_raked)),
  jk1_raked_total_enroll = stat(svytotal(~enroll, jk1_raked))
)

# --- Two-stage cluster sample: apiclus2 ----------------------------------------------------
dclus2 <- svydesign(id = ~dnum + snum, fpc = ~fpc1 + fpc2, data = apiclus2)
dclus2_uc <- svydesign(id = ~dnum, weights = ~pw, data = apiclus2)
ref$apiclus2 <- list(
  weights = unname(weights(dclus2)),
  mean_api00 = stat(svymean(~api00, dclus2)),
  total_api_stu = stat(svytotal(~api.stu, dclus2)),
  mean_enroll_narm = stat(svymean(~enroll, dclus2, na.rm = TRUE)),
  by_stype_mean_api00 = by_stat(svyby(~api00, ~stype, dclus2, svymean)),
  ultimate_mean_api00 = stat(svymean(~api00, dclus2_uc)),
  ultimate_total_api_stu = stat(svytotal(~api.stu, dclus2_uc))
)

# --- Simulated stratified two-stage household sample ---------------------------------------
set.seed(20240611)
nstrata <- 10
psu_per_stratum <- 10
rows <- list()
psu_id <- 0
for (h in seq_len(nstrata)) {
  for (j in seq_len(psu_per_stratum)) {
    psu_id <- psu_id + 1
    m <- sample(15:25, 1)
    effect <- rnorm(1, 0, 0.6)
    base <- runif(1, 40, 160)
    sex <- sample(c(1L, 2L), m, replace = TRUE)
    age <- sample(c("10-11", "12-13", "14-15", "16-17"), m, replace = TRUE,
                  prob = c(0.3, 0.3, 0.2, 0.2))
    hours <- 2 + 0.2 * h + effect + 0.5 * (sex == 2) + 0.4 * match(age, sort(unique(c(age, "10-11")))) +
      rnorm(m)
    risk <- as.integer(runif(m) < plogis(-1 + 0.3 * hours - 0.4 * (sex == 1)))
    device <- sample(c("phone", "tablet", "computer"), m, replace = TRUE, prob = c(0.6, 0.25, 0.15))
    rows[[psu_id]] <- data.frame(
      stratum = sprintf("S%02d", h), psu = 1000L + psu_id, sex = sex, agegrp = age,
      hours = hours, risk = risk, device = device,
      w = base * runif(m, 0.8, 1.25), psu_pop = 40L
    )
  }
}
sim <- do.call(rbind, rows)
sim <- sim[sample(nrow(sim)), ]  # shuffled: nothing may depend on row order
write_exact(sim, "sim.csv")

Nsim <- round(sum(sim$w) * 1.08)
pop.sex <- data.frame(sex = c(1L, 2L), Freq = c(round(Nsim * 0.51), Nsim - round(Nsim * 0.51)))
pop.age <- data.frame(agegrp = c("10-11", "12-13", "14-15", "16-17"),
                      Freq = c(round(Nsim * 0.26), round(Nsim * 0.25), round(Nsim * 0.25), 0))
pop.age$Freq[4] <- Nsim - sum(pop.age$Freq[1:3])
dsim <- svydesign(id = ~psu, strata = ~stratum, weights = ~w, fpc = ~psu_pop, data = sim)
rsim <- rake(dsim, list(~sex, ~agegrp), list(pop.sex, pop.age), control = tight)
jsim <- rake(as.svrepdesign(dsim, type = "JKn"), list(~sex, ~agegrp), list(pop.sex, pop.age),
             control = tight)
ref$sim <- list(
  margins = list(sex = setNames(as.list(pop.sex$Freq), pop.sex$sex),
                 agegrp = setNames(as.list(pop.age$Freq), pop.age$agegrp)),
  mean_hours = stat(svymean(~hours, dsim)),
  total_risk = stat(svytotal(~risk, dsim)),
  raked_weights = unname(weights(rsim)),
  raked_mean_hours = stat(svymean(~hours, rsim)),
  raked_mean_risk = stat(svymean(~risk, rsim)),
  raked_total_risk = stat(svytotal(~risk, rsim)),
  raked_ratio_risk_hours = ratio_stat(svyratio(~risk, ~hours, rsim)),
  raked_by_agegrp_mean_risk = by_stat(svyby(~risk, ~agegrp, rsim, svymean)),
  raked_by_device_mean_hours = by_stat(svyby(~hours, ~device, rsim, svymean)),
  raked_by_device_total_risk = by_stat(svyby(~risk, ~device, rsim, svytotal)),
  raked_prop_device = prop_stat(svymean(~device, rsim), "device"),
  jkn_mean_hours = stat(svymean(~hours, as.svrepdesign(dsim, type = "JKn"))),
  jkn_total_risk = stat(svytotal(~risk, as.svrepdesign(dsim, type = "JKn"))),
  jkn_raked_mean_hours = stat(svymean(~hours, jsim)),
  jkn_raked_total_risk = stat(svytotal(~risk, jsim)),
  jkn_raked_by_device_mean_hours = by_stat(svyby(~hours, ~device, jsim, svymean))
)

# --- Singleton PSU: stratum S10 keeps only its first PSU -----------------------------------
first_s10 <- min(sim$psu[sim$stratum == "S10"])
single <- sim[sim$stratum != "S10" | sim$psu == first_s10, ]
lonely <- list(n = nrow(single), psu = first_s10)
for (opt in c("adjust", "certainty", "remove")) {
  options(survey.lonely.psu = opt)
  ds <- svydesign(id = ~psu, strata = ~stratum, weights = ~w, data = single)
  lonely[[opt]] <- list(
    mean_hours = stat(svymean(~hours, ds)),
    total_risk = stat(svytotal(~risk, ds)),
    jkn_mean_hours = stat(svymean(~hours, as.svrepdesign(ds, type = "JKn"))),
    jkn_total_risk = stat(svytotal(~risk, as.svrepdesign(ds, type = "JKn")))
  )
}
options(survey.lonely.psu = "fail")
ref$lonely <- lonely

write_json(ref, file.path(outdir, "reference.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
cat("wrote", file.path(outdir, "reference.json"), "\n")
