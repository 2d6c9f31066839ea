// ohq_conv: the ohq-pynq int4/int8 conv IP core (top level).
//   s_axi_control  AXI4-Lite slave, register map in ohq_regmap.vh (from ohq_pynq/hw/regmap.py)
//   s_axis         input stream: param records, weights, activations (see vivado/README.md)
//   m_axis         output stream: NHWC outputs at OUT_BITS, tlast on the last beat
//   interrupt      GIE & |(IER & ISR), level
`default_nettype none
module ohq_conv #(
    parameter integer BITS = 8,
    parameter integer PE = 8,
    parameter integer SIMD = 8,
    parameter integer BUS_BYTES = 8,
    parameter integer MAX_K = 7,
    parameter integer LB_ROWS = 8,         // line buffer: LB_ROWS * MAX_ROW_WORDS words
    parameter integer MAX_ROW_WORDS = 1024,
    parameter integer MAX_WDEPTH = 1024,
    parameter integer MAX_TILES = 256,
    parameter integer LUT_MULS = (BITS == 4) ? 1 : 0   // 1: MAC multipliers in LUTs, not DSPs
) (
    input  wire                   ap_clk,
    input  wire                   ap_rst_n,
    // AXI4-Lite
    input  wire [7:0]             s_axi_control_awaddr,
    input  wire [2:0]             s_axi_control_awprot,
    input  wire                   s_axi_control_awvalid,
    output wire                   s_axi_control_awready,
    input  wire [31:0]            s_axi_control_wdata,
    input  wire [3:0]             s_axi_control_wstrb,
    input  wire                   s_axi_control_wvalid,
    output wire                   s_axi_control_wready,
    output wire [1:0]             s_axi_control_bresp,
    output reg                    s_axi_control_bvalid,
    input  wire                   s_axi_control_bready,
    input  wire [7:0]             s_axi_control_araddr,
    input  wire [2:0]             s_axi_control_arprot,
    input  wire                   s_axi_control_arvalid,
    output wire                   s_axi_control_arready,
    output reg  [31:0]            s_axi_control_rdata,
    output wire [1:0]             s_axi_control_rresp,
    output reg                    s_axi_control_rvalid,
    input  wire                   s_axi_control_rready,
    /* verilator lint_off SYMRSVDWORD */  // the port name PYNQ's interrupt wiring expects
    output wire                   interrupt,
    /* verilator lint_on SYMRSVDWORD */
    // AXI4-Stream in
    input  wire [BUS_BYTES*8-1:0] s_axis_tdata,
    input  wire [BUS_BYTES-1:0]   s_axis_tkeep,
    input  wire                   s_axis_tvalid,
    output wire                   s_axis_tready,
    input  wire                   s_axis_tlast,
    // AXI4-Stream out
    output wire [BUS_BYTES*8-1:0] m_axis_tdata,
    output wire [BUS_BYTES-1:0]   m_axis_tkeep,
    output wire                   m_axis_tvalid,
    input  wire                   m_axis_tready,
    output wire                   m_axis_tlast
);
`include "ohq_regmap.vh"
    localparam [OHQ_ADDR_BITS-1:0] ADDR_MASK = {{(OHQ_ADDR_BITS-2){1'b1}}, 2'b00};  // word aligned

    // ------------------------------------------------------------------ registers
    reg        ap_start, ap_done, ap_ready_r, gie;
    reg [1:0]  ier, isr;
    reg [15:0] r_cin, r_cout, r_h, r_w, r_groups;
    reg [3:0]  r_k, r_pt, r_pl, r_pb, r_pr, r_out_bits;
    reg [1:0]  r_stride;
    reg        r_in_signed, r_out_signed, r_relu;
    reg [63:0] cnt_cycles, cnt_in_stall, cnt_out_stall, cnt_mac;

    wire busy, done_pulse, ready_pulse, st_in, st_out, st_mac;
    wire [31:0] in_beats;

    // ------------------------------------------------------------------ AXI4-Lite write
    reg        aw_hold, w_hold;
    reg [7:0]  aw_addr;
    reg [31:0] w_data;
    reg [3:0]  w_strb;
    assign s_axi_control_awready = !aw_hold && !s_axi_control_bvalid;
    assign s_axi_control_wready = !w_hold && !s_axi_control_bvalid;
    assign s_axi_control_bresp = 2'b00;
    wire aw_fire = s_axi_control_awvalid && s_axi_control_awready;
    wire w_fire = s_axi_control_wvalid && s_axi_control_wready;
    wire have_aw = aw_hold || aw_fire;
    wire have_w = w_hold || w_fire;
    wire [7:0] wr_addr = aw_hold ? aw_addr : s_axi_control_awaddr;
    wire [31:0] wr_data_raw = w_hold ? w_data : s_axi_control_wdata;
    wire [3:0] wr_strb = w_hold ? w_strb : s_axi_control_wstrb;
    wire [31:0] wr_mask = {{8{wr_strb[3]}}, {8{wr_strb[2]}}, {8{wr_strb[1]}}, {8{wr_strb[0]}}};
    wire do_write = have_aw && have_w && !s_axi_control_bvalid;
    wire [31:0] wr_data = wr_data_raw & wr_mask;

    // ------------------------------------------------------------------ AXI4-Lite read
    assign s_axi_control_arready = !s_axi_control_rvalid;
    assign s_axi_control_rresp = 2'b00;
    wire ar_fire = s_axi_control_arvalid && s_axi_control_arready;
    reg [31:0] rd_mux;
    always @* begin
        case (s_axi_control_araddr & ADDR_MASK)
            OHQ_REG_CTRL:          rd_mux = {28'd0, ap_ready_r, !busy, ap_done, ap_start};
            OHQ_REG_GIE:           rd_mux = {31'd0, gie};
            OHQ_REG_IER:           rd_mux = {30'd0, ier};
            OHQ_REG_ISR:           rd_mux = {30'd0, isr};
            OHQ_REG_CIN:           rd_mux = {16'd0, r_cin};
            OHQ_REG_COUT:          rd_mux = {16'd0, r_cout};
            OHQ_REG_H:             rd_mux = {16'd0, r_h};
            OHQ_REG_W:             rd_mux = {16'd0, r_w};
            OHQ_REG_KERNEL:        rd_mux = {28'd0, r_k};
            OHQ_REG_STRIDE:        rd_mux = {30'd0, r_stride};
            OHQ_REG_PAD_T:         rd_mux = {28'd0, r_pt};
            OHQ_REG_PAD_L:         rd_mux = {28'd0, r_pl};
            OHQ_REG_PAD_B:         rd_mux = {28'd0, r_pb};
            OHQ_REG_PAD_R:         rd_mux = {28'd0, r_pr};
            OHQ_REG_GROUPS:        rd_mux = {16'd0, r_groups};
            OHQ_REG_IN_SIGNED:     rd_mux = {31'd0, r_in_signed};
            OHQ_REG_OUT_BITS:      rd_mux = {28'd0, r_out_bits};
            OHQ_REG_OUT_SIGNED:    rd_mux = {31'd0, r_out_signed};
            OHQ_REG_RELU:          rd_mux = {31'd0, r_relu};
            OHQ_REG_IN_BEATS:      rd_mux = in_beats;
            OHQ_REG_MAGIC:         rd_mux = OHQ_MAGIC;
            OHQ_REG_VERSION:       rd_mux = OHQ_VERSION;
            OHQ_REG_BITS:          rd_mux = BITS;
            OHQ_REG_PE:            rd_mux = PE;
            OHQ_REG_SIMD:          rd_mux = SIMD;
            OHQ_REG_BUS_BYTES:     rd_mux = BUS_BYTES;
            OHQ_REG_MAX_K:         rd_mux = MAX_K;
            OHQ_REG_MAX_ROW_WORDS: rd_mux = MAX_ROW_WORDS;
            OHQ_REG_LB_ROWS:       rd_mux = LB_ROWS;
            OHQ_REG_MAX_WDEPTH:    rd_mux = MAX_WDEPTH;
            OHQ_REG_MAX_TILES:     rd_mux = MAX_TILES;
            OHQ_REG_CYCLES_LO:     rd_mux = cnt_cycles[31:0];
            OHQ_REG_CYCLES_HI:     rd_mux = cnt_cycles[63:32];
            OHQ_REG_IN_STALL_LO:   rd_mux = cnt_in_stall[31:0];
            OHQ_REG_IN_STALL_HI:   rd_mux = cnt_in_stall[63:32];
            OHQ_REG_OUT_STALL_LO:  rd_mux = cnt_out_stall[31:0];
            OHQ_REG_OUT_STALL_HI:  rd_mux = cnt_out_stall[63:32];
            OHQ_REG_MAC_ACTIVE_LO: rd_mux = cnt_mac[31:0];
            OHQ_REG_MAC_ACTIVE_HI: rd_mux = cnt_mac[63:32];
            default:               rd_mux = 32'd0;
        endcase
    end
    wire rd_ctrl = ar_fire && ((s_axi_control_araddr & ADDR_MASK) == OHQ_REG_CTRL);

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            aw_hold <= 0; w_hold <= 0; aw_addr <= 0; w_data <= 0; w_strb <= 0;
            s_axi_control_bvalid <= 0; s_axi_control_rvalid <= 0; s_axi_control_rdata <= 0;
            ap_start <= 0; ap_done <= 0; ap_ready_r <= 0; gie <= 0; ier <= 0; isr <= 0;
            r_cin <= 0; r_cout <= 0; r_h <= 0; r_w <= 0; r_groups <= 0; r_k <= 0; r_stride <= 0;
            r_pt <= 0; r_pl <= 0; r_pb <= 0; r_pr <= 0; r_out_bits <= 0; r_in_signed <= 0;
            r_out_signed <= 0; r_relu <= 0;
            cnt_cycles <= 0; cnt_in_stall <= 0; cnt_out_stall <= 0; cnt_mac <= 0;
        end else begin
            // write channel
            if (aw_fire && !do_write) begin aw_hold <= 1; aw_addr <= s_axi_control_awaddr; end
            if (w_fire && !do_write) begin w_hold <= 1; w_data <= s_axi_control_wdata; w_strb <= s_axi_control_wstrb; end
            if (s_axi_control_bvalid && s_axi_control_bready) s_axi_control_bvalid <= 0;
            if (do_write) begin
                aw_hold <= 0; w_hold <= 0;
                s_axi_control_bvalid <= 1;
                case (wr_addr & ADDR_MASK)
                    OHQ_REG_CTRL:       if (wr_strb[0] && wr_data[0]) ap_start <= 1;
                    OHQ_REG_GIE:        gie <= wr_data[0];
                    OHQ_REG_IER:        ier <= wr_data[1:0];
                    OHQ_REG_ISR:        isr <= isr ^ wr_data[1:0];
                    OHQ_REG_CIN:        r_cin <= wr_data[15:0];
                    OHQ_REG_COUT:       r_cout <= wr_data[15:0];
                    OHQ_REG_H:          r_h <= wr_data[15:0];
                    OHQ_REG_W:          r_w <= wr_data[15:0];
                    OHQ_REG_KERNEL:     r_k <= wr_data[3:0];
                    OHQ_REG_STRIDE:     r_stride <= wr_data[1:0];
                    OHQ_REG_PAD_T:      r_pt <= wr_data[3:0];
                    OHQ_REG_PAD_L:      r_pl <= wr_data[3:0];
                    OHQ_REG_PAD_B:      r_pb <= wr_data[3:0];
                    OHQ_REG_PAD_R:      r_pr <= wr_data[3:0];
                    OHQ_REG_GROUPS:     r_groups <= wr_data[15:0];
                    OHQ_REG_IN_SIGNED:  r_in_signed <= wr_data[0];
                    OHQ_REG_OUT_BITS:   r_out_bits <= wr_data[3:0];
                    OHQ_REG_OUT_SIGNED: r_out_signed <= wr_data[0];
                    OHQ_REG_RELU:       r_relu <= wr_data[0];
                    default: ;
                endcase
            end
            // read channel
            if (s_axi_control_rvalid && s_axi_control_rready) s_axi_control_rvalid <= 0;
            if (ar_fire) begin
                s_axi_control_rvalid <= 1;
                s_axi_control_rdata <= rd_mux;
            end
            // ap_ctrl_hs
            if (ready_pulse) begin
                ap_start <= 0;
                ap_ready_r <= 1;
                if (ier[1]) isr[1] <= 1;
            end else if (rd_ctrl) ap_ready_r <= 0;
            if (done_pulse) begin
                ap_done <= 1;
                if (ier[0]) isr[0] <= 1;
            end else if (rd_ctrl) ap_done <= 0;
            // counters: cleared when a start is accepted, counting while busy
            if (ready_pulse) begin
                cnt_cycles <= 1; cnt_in_stall <= 0; cnt_out_stall <= 0; cnt_mac <= 0;
            end else if (busy) begin
                cnt_cycles <= cnt_cycles + 1;
                cnt_in_stall <= cnt_in_stall + st_in;
                cnt_out_stall <= cnt_out_stall + st_out;
                cnt_mac <= cnt_mac + st_mac;
            end
        end
    end
    assign interrupt = gie && |(ier & isr);

    ohq_conv_engine #(
        .BITS(BITS), .PE(PE), .SIMD(SIMD), .BUS_BYTES(BUS_BYTES),
        .LB_ROWS(LB_ROWS), .MAX_ROW_WORDS(MAX_ROW_WORDS), .MAX_WDEPTH(MAX_WDEPTH),
        .MAX_TILES(MAX_TILES), .LUT_MULS(LUT_MULS)
    ) u_engine (
        .clk(ap_clk), .rst_n(ap_rst_n), .start(ap_start && !busy && !ready_pulse),
        .busy(busy), .done_pulse(done_pulse), .ready_pulse(ready_pulse),
        .cfg_cin(r_cin), .cfg_cout(r_cout), .cfg_h(r_h), .cfg_w(r_w), .cfg_k(r_k),
        .cfg_stride(r_stride), .cfg_pad_t(r_pt), .cfg_pad_l(r_pl), .cfg_pad_b(r_pb),
        .cfg_pad_r(r_pr), .cfg_groups(r_groups), .cfg_in_signed(r_in_signed),
        .cfg_out_bits(r_out_bits), .cfg_out_signed(r_out_signed), .cfg_relu(r_relu),
        .in_beats(in_beats), .stat_in_stall(st_in), .stat_out_stall(st_out), .stat_mac(st_mac),
        .s_tdata(s_axis_tdata), .s_tvalid(s_axis_tvalid), .s_tready(s_axis_tready),
        .m_tdata(m_axis_tdata), .m_tvalid(m_axis_tvalid), .m_tready(m_axis_tready),
        .m_tlast(m_axis_tlast));
    assign m_axis_tkeep = {BUS_BYTES{1'b1}};
    // AXI side-band inputs the core does not need (protection, tkeep: full beats, tlast:
    // the core counts IN_BEATS) and the upper half of writes (registers are <= 16 bits wide).
    wire _unused_ok = &{1'b0, s_axi_control_awprot, s_axi_control_arprot, s_axis_tkeep,
                        s_axis_tlast, wr_data[31:16], 1'b0};
endmodule
`default_nettype wire
