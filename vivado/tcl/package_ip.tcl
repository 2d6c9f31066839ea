# Package vivado/rtl as the IP ohq-pynq:ohq:ohq_conv:1.0 into vivado/build/ip (run by `make ip`).
# Interfaces are inferred from the port names: s_axi_control (AXI4-Lite), s_axis / m_axis
# (AXI4-Stream), ap_clk, ap_rst_n (active low), interrupt.
set here [file dirname [file normalize [info script]]]
set root [file dirname $here]
set ipdir $root/build/ip

create_project -force ohq_ip $root/build/ip_project -part xc7z020clg400-1
add_files [glob $root/rtl/*.v]
add_files $root/rtl/ohq_regmap.vh
set_property file_type {Verilog Header} [get_files ohq_regmap.vh]
set_property top ohq_conv [current_fileset]
update_compile_order -fileset sources_1

ipx::package_project -root_dir $ipdir -vendor ohq-pynq -library ohq -taxonomy /UserIP \
    -import_files -set_current true
set core [ipx::current_core]
set_property name ohq_conv $core
set_property version 1.0 $core
set_property display_name {ohq-pynq int4/int8 conv core} $core
set_property description {Quantized conv layer core: AXI4-Stream in/out, ap_ctrl_hs AXI4-Lite, cycle counters} $core
set_property vendor_display_name {ohq-pynq} $core
set_property supported_families {zynq Production zynquplus Production} $core
foreach busif {s_axi_control s_axis m_axis} {
    ipx::associate_bus_interfaces -busif $busif -clock ap_clk $core
}
ipx::create_xgui_files $core
ipx::update_checksums $core
ipx::check_integrity $core
ipx::save_core $core
close_project
puts "packaged ohq-pynq:ohq:ohq_conv:1.0 in $ipdir"
