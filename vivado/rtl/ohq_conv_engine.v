// ohq_conv_engine: one quantized conv layer per start, streams in and out.
//
// Input stream (bytes, little-end first): Cout_pad 8-byte param records, PE * WPL weight words,
// H * W * CPP activation words (SIMD bytes each), zero padding to a whole beat. The writer side
// stores params/weights in per-lane memories and activation rows in a circular line buffer of
// LB_ROWS rows; the compute side walks output pixels and issues one SIMD-word x PE-lane MAC step
// per cycle, in the order (oy, ox, group, tile, ky, kx, chunk). Arithmetic is described in
// vivado/README.md and implemented bit-for-bit by ohq_pynq/hw/core_model.py.
`default_nettype none
module ohq_conv_engine #(
    parameter integer BITS = 8,            // 4 or 8
    parameter integer PE = 8,              // output-channel lanes (power of two)
    parameter integer SIMD = 8,            // input bytes per MAC step (power of two)
    parameter integer BUS_BYTES = 8,       // AXI4-Stream width (power of two, >= 8)
    parameter integer MAX_K = 7,
    parameter integer LB_ROWS = 9,         // >= MAX_K + 2 (stride 2 overlap)
    parameter integer MAX_ROW_WORDS = 1024,// power of two
    parameter integer MAX_WDEPTH = 1024,
    parameter integer MAX_TILES = 256,
    parameter integer LUT_MULS = (BITS == 4) ? 1 : 0  // 1: MAC multipliers as LUT shift-add
) (
    input  wire                   clk,
    input  wire                   rst_n,
    input  wire                   start,
    output reg                    busy,
    output reg                    done_pulse,
    output reg                    ready_pulse,
    input  wire [15:0]            cfg_cin,
    input  wire [15:0]            cfg_cout,
    input  wire [15:0]            cfg_h,
    input  wire [15:0]            cfg_w,
    input  wire [3:0]             cfg_k,
    input  wire [1:0]             cfg_stride,
    input  wire [3:0]             cfg_pad_t,
    input  wire [3:0]             cfg_pad_l,
    input  wire [3:0]             cfg_pad_b,
    input  wire [3:0]             cfg_pad_r,
    input  wire [15:0]            cfg_groups,
    input  wire                   cfg_in_signed,
    input  wire [3:0]             cfg_out_bits,
    input  wire                   cfg_out_signed,
    input  wire                   cfg_relu,
    output reg  [31:0]            in_beats,
    output wire                   stat_in_stall,
    output wire                   stat_out_stall,
    output wire                   stat_mac,
    input  wire [BUS_BYTES*8-1:0] s_tdata,
    input  wire                   s_tvalid,
    output wire                   s_tready,
    output wire [BUS_BYTES*8-1:0] m_tdata,
    output wire                   m_tvalid,
    input  wire                   m_tready,
    output wire                   m_tlast
);
    localparam integer PACK = 8 / BITS;               // elements per byte lane
    localparam integer CH = SIMD * PACK;              // input channels per word
    localparam integer LOG_CH = $clog2(CH);
    localparam integer LOG_PE = $clog2(PE);
    localparam integer LOG_SIMD = $clog2(SIMD);
    localparam integer LOG_BUS = $clog2(BUS_BYTES);
    localparam integer RWA = $clog2(MAX_ROW_WORDS);
    localparam integer SLW = $clog2(LB_ROWS);
    localparam integer WA = $clog2(MAX_WDEPTH);
    localparam integer TA = $clog2(MAX_TILES);
    localparam integer NVW = $clog2(PE + 1);
    localparam integer OUT_MAX = (SIMD > 8) ? SIMD : 8;
    localparam integer PW = 2 * BITS + 1;             // product width
    localparam integer SW = PW + LOG_CH + 1;          // per-lane word sum width
    // Depthwise mode (groups == cin == cout > 1) needs a PE tile inside one word.
    localparam integer DW_OK = (PE <= CH) ? 1 : 0;
    localparam integer LOG_CH_PE = (PE <= CH) ? LOG_CH - LOG_PE : 0;

    // ------------------------------------------------------------------ configuration, setup
    reg [15:0] c_cin, c_cout, c_h, c_w, c_groups;
    reg [3:0]  c_k, c_pt, c_pl, c_pb, c_pr;
    reg        c_s2, c_in_signed, c_ob8, c_out_signed, c_relu;
    reg [15:0] cin_g, cout_g, chunks_g, tiles_g, cpp, ntiles, kk, kkc, oh, ow, last_nvalid;
    reg [15:0] ngroups;        // groups walked by the compute loop (1 in depthwise mode)
    reg        dw;             // depthwise mode: dense activations, lanes over channels
    wire dw_c = (DW_OK != 0) && (c_groups > 1) && (div_qa == 1) && (div_qb == 1);
    reg [31:0] row_words, wpl, act_words, n_rec, in_bytes;
    reg signed [23:0] xbase0, scpp;

    localparam [3:0] ST_IDLE = 0, ST_DIV = 1, ST_D1 = 2, ST_D2 = 3, ST_D3 = 4, ST_D4 = 5,
                     ST_D5 = 6, ST_D6 = 7, ST_RUN = 8;
    reg [3:0]  st;
    reg [4:0]  div_i;
    reg [15:0] div_na, div_nb, div_qa, div_qb;
    reg [16:0] div_ra, div_rb;
    wire [16:0] div_ra_s = {div_ra[15:0], div_na[15]};
    wire [16:0] div_rb_s = {div_rb[15:0], div_nb[15]};
    wire [16:0] div_d = {1'b0, c_groups};
    wire [16:0] oh_num = c_h + c_pt + c_pb - c_k;
    wire [16:0] ow_num = c_w + c_pl + c_pr - c_k;
    wire setup_go;  // pulses when the run starts (writer and compute begin)
    assign setup_go = (st == ST_D6);

    // ------------------------------------------------------------------ writer (input side)
    localparam [1:0] WP_PARAM = 0, WP_WEIGHT = 1, WP_ACT = 2, WP_DRAIN = 3;
    reg  [1:0]  wph;
    reg  [31:0] beats_in;
    reg  [LOG_PE:0] wr_lane;
    reg  [31:0] wr_addr;       // param tile / weight word address
    reg  [15:0] wr_row;        // activation row being written
    reg  [31:0] wr_k;          // word within the row
    reg  [SLW-1:0] wr_slot;
    reg  [16:0] rows_written;
    reg  signed [17:0] low_row;   // oldest input row the compute side still reads
    reg  free_all;             // compute finished issuing: the writer may overwrite anything
    wire [OUT_MAX*8-1:0] gb_word;
    wire gb_valid;
    wire in_en = (st == ST_RUN) && (beats_in < in_beats);
    wire row_ok = free_all || ($signed({2'b00, wr_row}) < low_row + LB_ROWS);
    wire gb_ready = (wph != WP_ACT) || row_ok;
    wire gb_take = (st == ST_RUN) && gb_valid && gb_ready;
    wire in_hs = s_tvalid && s_tready;
    assign stat_in_stall = s_tready && !s_tvalid;

    ohq_gearbox #(.BUS_BYTES(BUS_BYTES), .SIMD(SIMD)) u_gearbox (
        .clk(clk), .rst_n(rst_n), .clear(st != ST_RUN), .en(in_en),
        .s_tdata(s_tdata), .s_tvalid(s_tvalid), .s_tready(s_tready),
        .need_simd(wph != WP_PARAM), .word(gb_word), .word_valid(gb_valid),
        .word_ready(gb_ready && st == ST_RUN));

    wire lb_we = gb_take && (wph == WP_ACT);
    wire [SLW+RWA-1:0] lb_waddr = {wr_slot, wr_k[RWA-1:0]};

    always @(posedge clk) begin
        if (!rst_n || st != ST_RUN) begin
            wph <= WP_PARAM;
            beats_in <= 0;
            wr_lane <= 0;
            wr_addr <= 0;
            wr_row <= 0;
            wr_k <= 0;
            wr_slot <= 0;
            rows_written <= 0;
        end else begin
            if (in_hs) beats_in <= beats_in + 1;
            if (gb_take) begin
                case (wph)
                    WP_PARAM, WP_WEIGHT: begin
                        if (wr_lane == PE - 1) begin
                            wr_lane <= 0;
                            if (wr_addr == ((wph == WP_PARAM) ? ntiles : wpl) - 1) begin
                                wr_addr <= 0;
                                wph <= wph + 1;
                            end else
                                wr_addr <= wr_addr + 1;
                        end else
                            wr_lane <= wr_lane + 1;
                    end
                    WP_ACT: begin
                        if (wr_k == row_words - 1) begin
                            wr_k <= 0;
                            wr_row <= wr_row + 1;
                            rows_written <= rows_written + 1;
                            wr_slot <= (wr_slot == LB_ROWS - 1) ? 0 : wr_slot + 1;
                            if (wr_row == c_h - 1) wph <= WP_DRAIN;
                        end else
                            wr_k <= wr_k + 1;
                    end
                    default: ;
                endcase
            end
        end
    end

    // ------------------------------------------------------------------ compute (issue, S0)
    localparam [1:0] C_IDLE = 0, C_WAIT = 1, C_RUN = 2, C_END = 3;
    reg [1:0]  cst;
    reg [15:0] oy, ox, g, t, ch;
    reg [3:0]  ky, kx;
    reg signed [17:0] iy0, ix0;
    reg [SLW-1:0] slot0;
    reg signed [23:0] xbase, kxoff, gbase;
    reg [31:0] waddr;
    reg [15:0] tile_lin;
    reg [16:0] need_rows;
    wire adv;                  // the whole pipeline advances (output FIFO not full)
    wire rows_ready = (rows_written >= need_rows);
    wire issue = (cst == C_RUN) && rows_ready && adv;
    assign stat_mac = issue;

    wire last_ch = (ch == chunks_g - 1);
    wire last_kx = (kx == c_k - 1);
    wire last_ky = (ky == c_k - 1);
    wire last_t = (t == tiles_g - 1);
    wire last_g = (g == ngroups - 1);
    wire last_ox = (ox == ow - 1);
    wire last_oy = (oy == oh - 1);
    wire op_first = (ch == 0) && (kx == 0) && (ky == 0);
    wire op_last = last_ch && last_kx && last_ky;
    wire op_pix_end = op_last && last_t && last_g;
    wire op_end = op_pix_end && last_ox && last_oy;
    wire signed [17:0] iy = iy0 + $signed({14'd0, ky});
    wire signed [17:0] ix = ix0 + $signed({14'd0, kx});
    wire op_pad = (iy < 0) || (iy >= $signed({2'b00, c_h})) || (ix < 0) || (ix >= $signed({2'b00, c_w}));
    wire [SLW:0] slot_sum = slot0 + ky;
    wire [SLW-1:0] slot_y = (slot_sum >= LB_ROWS) ? slot_sum - LB_ROWS : slot_sum;
    // Word of the pixel: group base + chunk; in depthwise mode the word holding tile t's channels.
    wire [15:0] t_word = t >> LOG_CH_PE;
    wire signed [23:0] gsel = dw ? $signed({8'd0, t_word}) : gbase;
    wire signed [23:0] aoff = xbase + kxoff + gsel + $signed({8'd0, ch});
    wire [SLW+RWA-1:0] lb_raddr = {slot_y, aoff[RWA-1:0]};
    wire [NVW-1:0] op_nvalid = last_t ? last_nvalid[NVW-1:0] : PE;
    wire signed [17:0] iy0_next = iy0 + (c_s2 ? 2 : 1);
    wire signed [17:0] need_next = iy0_next + c_k;

    always @(posedge clk) begin
        if (!rst_n || st != ST_RUN) begin
            cst <= C_IDLE;
            free_all <= 1'b0;
        end else begin
            case (cst)
                C_IDLE: begin
                    oy <= 0; ox <= 0; g <= 0; t <= 0; ch <= 0; ky <= 0; kx <= 0;
                    iy0 <= -$signed({14'd0, c_pt});
                    ix0 <= -$signed({14'd0, c_pl});
                    low_row <= -$signed({14'd0, c_pt});
                    slot0 <= (c_pt == 0) ? 0 : LB_ROWS - c_pt;
                    xbase <= xbase0;
                    kxoff <= 0; gbase <= 0; waddr <= 0; tile_lin <= 0;
                    need_rows <= ((c_k - c_pt) > c_h) ? c_h : (c_k - c_pt);
                    cst <= C_WAIT;
                end
                C_WAIT: if (wph == WP_ACT || wph == WP_DRAIN) cst <= C_RUN;
                C_RUN: if (issue) begin
                    waddr <= op_pix_end ? 0 : waddr + 1;
                    if (!last_ch) ch <= ch + 1;
                    else begin
                        ch <= 0;
                        if (!last_kx) begin kx <= kx + 1; kxoff <= kxoff + $signed({8'd0, cpp}); end
                        else begin
                            kx <= 0; kxoff <= 0;
                            if (!last_ky) ky <= ky + 1;
                            else begin
                                ky <= 0;
                                if (!last_t) begin t <= t + 1; tile_lin <= tile_lin + 1; end
                                else begin
                                    t <= 0;
                                    if (!last_g) begin
                                        g <= g + 1; tile_lin <= tile_lin + 1;
                                        gbase <= gbase + $signed({8'd0, chunks_g});
                                    end else begin
                                        g <= 0; gbase <= 0; tile_lin <= 0;
                                        if (!last_ox) begin
                                            ox <= ox + 1;
                                            ix0 <= ix0 + (c_s2 ? 2 : 1);
                                            xbase <= xbase + scpp;
                                        end else begin
                                            ox <= 0;
                                            ix0 <= -$signed({14'd0, c_pl});
                                            xbase <= xbase0;
                                            if (!last_oy) begin
                                                oy <= oy + 1;
                                                iy0 <= iy0_next;
                                                low_row <= iy0_next;
                                                slot0 <= (slot0 + (c_s2 ? 2 : 1) >= LB_ROWS)
                                                         ? slot0 + (c_s2 ? 2 : 1) - LB_ROWS
                                                         : slot0 + (c_s2 ? 2 : 1);
                                                need_rows <= (need_next > $signed({2'b00, c_h}))
                                                             ? c_h : need_next[16:0];
                                            end else begin
                                                cst <= C_END;
                                                free_all <= 1'b1;
                                            end
                                        end
                                    end
                                end
                            end
                        end
                    end
                end
                default: ;
            endcase
        end
    end

    // ------------------------------------------------------------------ memories, S1
    reg [SIMD*8-1:0] lbuf [0:LB_ROWS*MAX_ROW_WORDS-1];
    reg [SIMD*8-1:0] act1;
    always @(posedge clk) begin
        if (lb_we) lbuf[lb_waddr] <= gb_word[SIMD*8-1:0];
        if (adv) act1 <= lbuf[lb_raddr];
    end

    reg v1, pad1, first1, last1, pixend1, end1;
    reg [TA-1:0] tile1;
    reg [NVW-1:0] nv1;
    reg v2, first2, last2, pixend2, end2;
    reg [TA-1:0] tile2;
    reg [NVW-1:0] nv2;
    reg v3, first3, last3, pixend3, end3;
    reg [TA-1:0] tile3;
    reg [NVW-1:0] nv3;
    reg v4, pixend4, end4;
    reg [NVW-1:0] nv4;
    reg v5, pixend5, end5;
    reg [NVW-1:0] nv5;
    reg v6, pixend6, end6;
    reg [NVW-1:0] nv6;
    reg v7, pixend7, end7;
    reg [NVW-1:0] nv7;

    always @(posedge clk) begin
        if (!rst_n || st != ST_RUN) begin
            v1 <= 0; v2 <= 0; v3 <= 0; v4 <= 0; v5 <= 0; v6 <= 0; v7 <= 0;
        end else if (adv) begin
            v1 <= issue; pad1 <= op_pad; first1 <= op_first; last1 <= op_last;
            pixend1 <= op_pix_end; end1 <= op_end; tile1 <= tile_lin[TA-1:0]; nv1 <= op_nvalid;
            v2 <= v1; first2 <= first1; last2 <= last1; pixend2 <= pixend1; end2 <= end1;
            tile2 <= tile1; nv2 <= nv1;
            v3 <= v2; first3 <= first2; last3 <= last2; pixend3 <= pixend2; end3 <= end2;
            tile3 <= tile2; nv3 <= nv2;
            v4 <= v3 && last3; pixend4 <= pixend3; end4 <= end3; nv4 <= nv3;
            v5 <= v4; pixend5 <= pixend4; end5 <= end4; nv5 <= nv4;
            v6 <= v5; pixend6 <= pixend5; end6 <= end5; nv6 <= nv5;
            v7 <= v6; pixend7 <= pixend6; end7 <= end6; nv7 <= nv6;
        end
    end

    // ------------------------------------------------------------------ PE lanes
    wire [PE*8-1:0] res_bus;
    genvar pe, e;
    generate
        for (pe = 0; pe < PE; pe = pe + 1) begin : lane
            reg [SIMD*8-1:0] wmem [0:MAX_WDEPTH-1];
            reg [63:0] pmem [0:MAX_TILES-1];
            reg [SIMD*8-1:0] w1;
            reg [63:0] prm4;
            reg [7:0] res7;
            always @(posedge clk) begin
                if (gb_take && wph == WP_WEIGHT && wr_lane == pe) wmem[wr_addr[WA-1:0]] <= gb_word[SIMD*8-1:0];
                if (gb_take && wph == WP_PARAM && wr_lane == pe) pmem[wr_addr[TA-1:0]] <= gb_word[63:0];
                if (adv) w1 <= wmem[waddr[WA-1:0]];
                if (adv) prm4 <= pmem[tile3];
            end

            // S2: products of the CH elements of the word.
            reg [CH*PW-1:0] prod2;
            for (e = 0; e < CH; e = e + 1) begin : mul
                wire [BITS-1:0] xa = pad1 ? {BITS{1'b0}} : act1[e*BITS +: BITS];
                wire [BITS-1:0] wb = w1[e*BITS +: BITS];
                wire signed [BITS:0] xs = {c_in_signed & xa[BITS-1], xa};
                wire signed [BITS-1:0] ws = wb;
                wire signed [PW-1:0] pr;
                if (LUT_MULS != 0) begin : lut
                    // x * w = sum_{i < BITS-1} w[i] (x << i) - w[BITS-1] (x << (BITS-1)):
                    // adders only, so synthesis keeps these small products out of the DSPs.
                    wire signed [PW-1:0] xe = xs;
                    reg signed [PW-1:0] sa;
                    integer j;
                    always @* begin
                        sa = {PW{1'b0}};
                        for (j = 0; j < BITS - 1; j = j + 1)
                            if (wb[j]) sa = sa + (xe <<< j);
                        if (wb[BITS-1]) sa = sa - (xe <<< (BITS - 1));
                    end
                    assign pr = sa;
                end else begin : dsp
                    assign pr = xs * ws;
                end
                always @(posedge clk) if (adv) prod2[e*PW +: PW] <= pr;
            end

            // S3: sum of the products.
            reg signed [SW-1:0] sum_c;
            integer i;
            always @* begin
                sum_c = 0;
                for (i = 0; i < CH; i = i + 1) sum_c = sum_c + $signed(prod2[i*PW +: PW]);
            end
            reg signed [SW-1:0] sum3;
            always @(posedge clk) if (adv) sum3 <= sum_c;

            // S4: accumulate (int32, wrapping); snapshot at the last step of an output.
            reg signed [31:0] acc, acc4;
            wire signed [31:0] sum3x = sum3;
            wire signed [31:0] acc_n = first3 ? sum3x : acc + sum3x;
            always @(posedge clk) if (adv && v3) begin
                acc <= acc_n;
                if (last3) acc4 <= acc_n;
            end

            // R1..R3: + bias (int32 wrap), * mult + round, >>> shift, ReLU, clamp.
            reg signed [31:0] a5;
            reg [15:0] mult5;
            reg [5:0] shift5;
            reg signed [48:0] p6;
            reg [5:0] shift6;
            wire signed [31:0] bias4 = prm4[31:0];
            wire signed [48:0] rnd5 = (shift5 == 0) ? 49'sd0 : (49'sd1 <<< (shift5 - 1));
            wire signed [48:0] y6 = p6 >>> shift6;
            wire signed [48:0] yr6 = (c_relu && y6 < 0) ? 49'sd0 : y6;
            wire signed [48:0] hi6 = c_ob8 ? (c_out_signed ? 49'sd127 : 49'sd255)
                                           : (c_out_signed ? 49'sd7 : 49'sd15);
            wire signed [48:0] lo6 = !c_out_signed ? 49'sd0 : (c_ob8 ? -49'sd128 : -49'sd8);
            wire signed [48:0] yc6 = (yr6 > hi6) ? hi6 : ((yr6 < lo6) ? lo6 : yr6);
            always @(posedge clk) if (adv) begin
                a5 <= acc4 + bias4;
                mult5 <= prm4[47:32];
                shift5 <= prm4[53:48];
                p6 <= a5 * $signed({1'b0, mult5}) + rnd5;
                shift6 <= shift5;
                res7 <= yc6[7:0];
            end
            assign res_bus[pe*8 +: 8] = res7;
        end
    endgenerate

    // ------------------------------------------------------------------ output FIFO, packer
    localparam integer FD = 8;
    localparam integer FEW = PE * 8 + NVW + 2;
    reg [FEW-1:0] fifo [0:FD-1];
    reg [3:0] f_wp, f_rp, f_cnt;
    wire f_full = (f_cnt == FD);
    assign adv = !f_full;
    wire f_push = adv && v7;
    wire pk_ready;
    wire f_pop = (f_cnt != 0) && pk_ready;
    wire [FEW-1:0] f_head = fifo[f_rp[2:0]];
    always @(posedge clk) begin
        if (!rst_n || st != ST_RUN) begin
            f_wp <= 0; f_rp <= 0; f_cnt <= 0;
        end else begin
            if (f_push) begin
                fifo[f_wp[2:0]] <= {end7, pixend7, nv7, res_bus};
                f_wp <= f_wp + 1;
            end
            if (f_pop) f_rp <= f_rp + 1;
            f_cnt <= f_cnt + f_push - f_pop;
        end
    end

    ohq_out_packer #(.PE(PE), .BUS_BYTES(BUS_BYTES)) u_packer (
        .clk(clk), .rst_n(rst_n), .clear(st != ST_RUN), .ob8(c_ob8),
        .in_data(f_head[PE*8-1:0]), .in_nvalid(f_head[PE*8 +: NVW]),
        .in_pix_end(f_head[PE*8+NVW]), .in_last(f_head[PE*8+NVW+1]),
        .in_valid(f_cnt != 0), .in_ready(pk_ready),
        .m_tdata(m_tdata), .m_tvalid(m_tvalid), .m_tready(m_tready), .m_tlast(m_tlast));
    assign stat_out_stall = m_tvalid && !m_tready;

    // ------------------------------------------------------------------ control
    reg out_done;
    wire in_done = (beats_in == in_beats);
    always @(posedge clk) begin
        done_pulse <= 1'b0;
        ready_pulse <= 1'b0;
        if (!rst_n) begin
            st <= ST_IDLE;
            busy <= 1'b0;
            in_beats <= 0;
            out_done <= 1'b0;
        end else begin
            case (st)
                ST_IDLE: if (start) begin
                    c_cin <= cfg_cin; c_cout <= cfg_cout; c_h <= cfg_h; c_w <= cfg_w;
                    c_k <= cfg_k; c_s2 <= (cfg_stride == 2); c_pt <= cfg_pad_t; c_pl <= cfg_pad_l;
                    c_pb <= cfg_pad_b; c_pr <= cfg_pad_r; c_groups <= cfg_groups;
                    c_in_signed <= cfg_in_signed; c_ob8 <= (cfg_out_bits == 8);
                    c_out_signed <= cfg_out_signed; c_relu <= cfg_relu;
                    div_na <= cfg_cin; div_nb <= cfg_cout; div_ra <= 0; div_rb <= 0;
                    div_qa <= 0; div_qb <= 0; div_i <= 0;
                    busy <= 1'b1;
                    out_done <= 1'b0;
                    ready_pulse <= 1'b1;
                    st <= ST_DIV;
                end
                ST_DIV: begin   // restoring division: cin / groups, cout / groups
                    div_na <= div_na << 1;
                    div_nb <= div_nb << 1;
                    if (div_ra_s >= div_d) begin div_ra <= div_ra_s - div_d; div_qa <= {div_qa[14:0], 1'b1}; end
                    else begin div_ra <= div_ra_s; div_qa <= {div_qa[14:0], 1'b0}; end
                    if (div_rb_s >= div_d) begin div_rb <= div_rb_s - div_d; div_qb <= {div_qb[14:0], 1'b1}; end
                    else begin div_rb <= div_rb_s; div_qb <= {div_qb[14:0], 1'b0}; end
                    div_i <= div_i + 1;
                    if (div_i == 15) st <= ST_D1;
                end
                ST_D1: begin
                    dw <= dw_c;
                    ngroups <= dw_c ? 16'd1 : c_groups;
                    cin_g <= div_qa;
                    cout_g <= dw_c ? c_cout : div_qb;
                    chunks_g <= dw_c ? 16'd1 : (div_qa + CH - 1) >> LOG_CH;
                    tiles_g <= dw_c ? (c_cout + PE - 1) >> LOG_PE : (div_qb + PE - 1) >> LOG_PE;
                    kk <= c_k * c_k;
                    oh <= (c_s2 ? (oh_num >> 1) : oh_num) + 1;
                    ow <= (c_s2 ? (ow_num >> 1) : ow_num) + 1;
                    st <= ST_D2;
                end
                ST_D2: begin
                    cpp <= dw ? (c_cin + CH - 1) >> LOG_CH : c_groups * chunks_g;
                    ntiles <= dw ? tiles_g : c_groups * tiles_g;
                    kkc <= kk * chunks_g;
                    last_nvalid <= cout_g - ((tiles_g - 1) << LOG_PE);
                    st <= ST_D3;
                end
                ST_D3: begin
                    row_words <= c_w * cpp;
                    wpl <= ntiles * kkc;
                    xbase0 <= -$signed({8'd0, c_pl * cpp});
                    scpp <= c_s2 ? {7'd0, cpp, 1'b0} : {8'd0, cpp};
                    n_rec <= ntiles << LOG_PE;
                    st <= ST_D4;
                end
                ST_D4: begin
                    act_words <= c_h * row_words;
                    st <= ST_D5;
                end
                ST_D5: begin
                    in_bytes <= (n_rec << 3) + (((wpl << LOG_PE) + act_words) << LOG_SIMD);
                    st <= ST_D6;
                end
                ST_D6: begin
                    in_beats <= (in_bytes + BUS_BYTES - 1) >> LOG_BUS;
                    st <= ST_RUN;
                end
                ST_RUN: begin
                    if (m_tvalid && m_tready && m_tlast) out_done <= 1'b1;
                    if (out_done && in_done && cst == C_END) begin
                        st <= ST_IDLE;
                        busy <= 1'b0;
                        done_pulse <= 1'b1;
                    end
                end
                default: st <= ST_IDLE;
            endcase
        end
    end
endmodule
`default_nettype wire
