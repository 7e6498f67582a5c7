// moefuse/ops/finalize_routing.h
#pragma once

#include "moefuse/tensor.h"
