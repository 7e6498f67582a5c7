# Per-file ISA flags, chosen by the file name: foo__avx2.cpp, foo__avx512.cpp, foo__avx512vnni.cpp,
# foo__avx512bf16.cpp, foo__amx.cpp (AMX-TILE/INT8/BF16 with everything avx512bf16 has). Files without such a suffix are compiled for baseline x86-64.
function(moefuse_apply_isa_flags sources)
  foreach(src IN LISTS sources)
    get_filename_component(name ${src} NAME_WE)
    if(name MATCHES "__amx$")
      set_source_files_properties(${src} PROPERTIES COMPILE_OPTIONS
        "-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mfma;-mavx512bf16;-mavx512vnni;-mamx-tile;-mamx-int8;-mamx-bf16")
    elseif(name MATCHES "__avx512bf16$")
      set_source_files_properties(${src} PROPERTIES COMPILE_OPTIONS
        "-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mfma;-mavx512bf16")
    elseif(name MATCHES "__avx512vnni$")
      set_source_files_properties(${src} PROPERTIES COMPILE_OPTIONS
        "-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mfma;-mavx512vnni")
    elseif(name MATCHES "__avx512$")
      set_source_files_properties(${src} PROPERTIES COMPILE_OPTIONS "-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mfma")
    elseif(name MATCHES "__avx2$")
      set_source_files_properties(${src} PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma;-mf16c")
    endif()
  endforeach()
endfunction()
