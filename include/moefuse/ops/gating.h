// moefuse/ops/gating.h
#pragma once

#include "moefuse/tensor.h"
