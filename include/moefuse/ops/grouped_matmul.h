// moefuse/ops/grouped_matmul.h
#pragma once

#include "moefuse/tensor.h"
