// moefuse/ops/init_routing.h
#pragma once

#include "moefuse/tensor.h"
