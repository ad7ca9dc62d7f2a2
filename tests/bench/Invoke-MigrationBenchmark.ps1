<#
.SYNOPSIS
    End-to-end migration benchmark over a tc-shaped link (issue #3): None, Native (QEMU XBZRLE),
    Delta and Lz4 on the same dirtying guest, one migration per cell.

.DESCRIPTION
    Creates a network namespace, lowers its loopback MTU to 1500 and shapes it with a tbf qdisc
    (100 Mbit/s burst 256kb, or 1 Gbit/s burst 1mb), then runs every cell with
    Invoke-BenchmarkCell.ps1 inside it (ip netns exec), so both QEMUs, QEMU's TCP and the
    tunnel's TCP on 127.0.0.1 cross the shaped loopback. The namespace is removed at the end.
    Without root (or with -Unshaped) it runs the cells unshaped and says so in the output.

    Writes tests/bench/results/<name>.json (small: one object per cell) and <name>.md (the table),
    and prints the table.

.EXAMPLE
    # The whole grid (~40 min on 2 cores), as root, from the repo root:
    dotnet pwsh -NoProfile -File tests/bench/Invoke-MigrationBenchmark.ps1

.EXAMPLE
    # One cell to check the harness:
    dotnet pwsh -NoProfile -File tests/bench/Invoke-MigrationBenchmark.ps1 -Cell 'a/Delta' -Name smoke
#>
[CmdletBinding()]
param(
    # Cell ids to run (wildcards), e.g. 'a/Delta', 'a/*', '*/None'. Default: all.
    [string[]] $Cell = @('*'),
    # The module to import; default: a private snapshot copied from the repo at start.
    [string] $ModulePath,
    [string] $Guest = (Join-Path $PSScriptRoot '../guest/out/guest.elf'),
    [string] $Name = "issue3-$([DateTime]::UtcNow.ToString('yyyyMMdd-HHmm'))",
    [string] $OutDirectory = (Join-Path $PSScriptRoot 'results'),
    [string] $Namespace = 'dmbench',
    [switch] $Unshaped,
    # Re-render the table (and re-save the trimmed JSON) from an earlier run's JSON; runs nothing.
    [string] $RenderFrom
)

$ErrorActionPreference = 'Stop'
$repo = (Resolve-Path (Join-Path $PSScriptRoot '../..')).Path
$Guest = (Resolve-Path $Guest).Path
$inner = Join-Path $PSScriptRoot 'Invoke-BenchmarkCell.ps1'
$pwshDll = Join-Path $PSHOME 'pwsh.dll'
$dotnet = (Get-Process -Id $PID).Path   # the dotnet host running this pwsh

if (-not $ModulePath -and -not $RenderFrom) {
    # The module may be rebuilt while the grid runs: benchmark a private copy taken now.
    $snap = Join-Path ([IO.Path]::GetTempPath()) "dm-bench-$Name/module-snapshot"
    New-Item -ItemType Directory $snap -Force | Out-Null
    Copy-Item -Recurse -Force "$repo/DeltaMigrate.psd1", "$repo/module", "$repo/en-US" $snap
    $ModulePath = "$snap/DeltaMigrate.psd1"
}

# ---- the workload of issue #3 --------------------------------------------------------------
$rows = [ordered]@{
    a = @{ Hot = 64; Rate = 20000; Link = '100mbit' }
    b = @{ Hot = 128; Rate = 60000; Link = '100mbit' }
    c = @{ Hot = 128; Rate = 60000; Link = '1gbit' }
}
$shape = @{ '100mbit' = 'rate 100mbit burst 256kb latency 50ms'; '1gbit' = 'rate 1gbit burst 1mb latency 50ms' }

$grid = foreach ($row in $rows.Keys) {
    $r = $rows[$row]
    foreach ($fill in 'random', 'text') {
        $append = "ws=256 hot=$($r.Hot) rate=$($r.Rate) bytes=16 pattern=scatter fill=$fill"
        $modes = if ($fill -eq 'random') {
            @(
                @{ Mode = 'None'; Label = 'None' }
                @{ Mode = 'Native'; Label = 'Native 64 MiB'; CacheSize = 64MB }
                @{ Mode = 'Native'; Label = 'Native 256 MiB'; CacheSize = 256MB }
                @{ Mode = 'Delta'; Label = 'Delta (default)' }
                @{ Mode = 'Lz4'; Label = 'Lz4' }
            ) + $(if ($row -eq 'a') { @{ Mode = 'None'; Label = 'None, pause at 30 s'; Timeout = 30; TimeoutAction = 'Pause'; Id = 'None-Pause30' } })
        }
        elseif ($row -eq 'a') {
            @(
                @{ Mode = 'Native'; Label = 'Native 256 MiB, text'; CacheSize = 256MB; Id = 'Native256-text' }
                @{ Mode = 'Delta'; Label = 'Delta (default), text'; Id = 'Delta-text' }
            )
        }
        foreach ($m in $modes) {
            $id = if ($m.Id) { $m.Id } elseif ($m.CacheSize) { "$($m.Mode)$($m.CacheSize / 1MB)" } else { $m.Mode }
            [pscustomobject]@{
                Id = "$row/$id"; Row = $row; Label = $m.Label; Mode = $m.Mode; Link = $r.Link; Append = $append
                CacheSize = [long]$m.CacheSize; Timeout = $(if ($m.Timeout) { $m.Timeout } else { 120 })
                TimeoutAction = $(if ($m.TimeoutAction) { $m.TimeoutAction } else { 'Cancel' })
                RequestedRate = $r.Rate
            }
        }
    }
}
$Cell = @($Cell | ForEach-Object { $_ -split ',' } | ForEach-Object Trim)   # -File passes 'a,b' as one string
$selected = @($grid | Where-Object { $id = $_.Id; @($Cell | Where-Object { $id -like $_ }).Count -gt 0 })
if (-not $selected) { throw "No cell matches $($Cell -join ', '). Cells: $($grid.Id -join ', ')" }

# ---- shaping ---------------------------------------------------------------------------------
$isRoot = (& id -u) -eq '0'
$shaped = $isRoot -and -not $Unshaped
if (-not $shaped) {
    Write-Warning ($(if (-not $isRoot) { 'Not root: ' } else { '-Unshaped: ' }) +
        'running UNSHAPED on the host loopback. Downtime and total time then say little (QEMU ignores its bandwidth limit in the final copy, and loopback is fast).')
}

function Invoke-Native([string] $File, [string[]] $Arguments, [switch] $IgnoreError) {
    & $File @Arguments 2>&1 | ForEach-Object { Write-Verbose "$File $($Arguments -join ' '): $_" }
    if ($LASTEXITCODE -ne 0 -and -not $IgnoreError) { throw "$File $($Arguments -join ' ') failed ($LASTEXITCODE)" }
}

function Set-Link([string] $Link) {
    $arguments = @('netns', 'exec', $Namespace, 'tc', 'qdisc', 'replace', 'dev', 'lo', 'root', 'tbf') + ($shape[$Link] -split ' ')
    Invoke-Native ip $arguments
}

function Save-Results($Cells, [bool] $Shaped) {
    # Small enough to commit: per cell only the first and last four rounds (RoundsRecorded has the count).
    $trimmed = foreach ($c in $Cells) {
        $copy = [ordered]@{}
        foreach ($p in $c.PSObject.Properties) { $copy[$p.Name] = $p.Value }
        $r = @($c.Rounds)
        if ($r.Count -gt 8) { $copy.Rounds = @($r[0..3]) + @($r[-4..-1]); $copy.RoundsTrimmed = $true }
        [pscustomobject]$copy
    }
    [ordered]@{
        Name = $Name; Shaped = $Shaped; Host = [Environment]::MachineName; Cpus = [Environment]::ProcessorCount
        Qemu = ((& qemu-system-x86_64 --version) | Select-Object -First 1); Module = $ModulePath
        Repetitions = 1; Cells = @($trimmed)
    } | ConvertTo-Json -Depth 6 | Set-Content (Join-Path $OutDirectory "$Name.json")
}

New-Item -ItemType Directory $OutDirectory -Force | Out-Null
if ($RenderFrom) {
    $loaded = Get-Content -Raw $RenderFrom | ConvertFrom-Json
    $results = [Collections.Generic.List[object]]::new()
    foreach ($c in $loaded.Cells) { $results.Add($c) }
    if (-not $PSBoundParameters.ContainsKey('Name')) { $Name = $loaded.Name }
    Save-Results $results $loaded.Shaped
}
else {
    $work = Join-Path ([IO.Path]::GetTempPath()) "dm-bench-$Name"
    New-Item -ItemType Directory $work -Force | Out-Null

    $results = [Collections.Generic.List[object]]::new()
    try {
        if ($shaped) {
            if (@(& ip netns list | Where-Object { ($_ -split ' ')[0] -eq $Namespace }).Count) {
                $shaped = $false   # not ours: leave it alone in finally
                throw "Network namespace '$Namespace' exists already (another benchmark running?). Remove it with 'ip netns del $Namespace' or pass -Namespace."
            }
            Invoke-Native ip @('netns', 'add', $Namespace)
            Invoke-Native ip @('netns', 'exec', $Namespace, 'ip', 'link', 'set', 'lo', 'mtu', '1500', 'up')
        }
        $i = 0
        foreach ($c in $selected) {
            $i++
            if ($shaped) { Set-Link $c.Link }
            $qdisc = if ($shaped) { (& ip netns exec $Namespace tc qdisc show dev lo) -join ' ' } else { 'unshaped' }
            $out = Join-Path $work ("{0:d2}-{1}.json" -f $i, ($c.Id -replace '[/ ]', '-'))
            $cellArgs = @('-NoProfile', '-NonInteractive', '-File', $inner, '-ModulePath', $ModulePath, '-Guest', $Guest,
                '-Append', $c.Append, '-Compress', $c.Mode, '-OutFile', $out, '-Timeout', $c.Timeout, '-TimeoutAction', $c.TimeoutAction)
            if ($c.CacheSize) { $cellArgs += @('-CacheSize', $c.CacheSize) }
            $cmd = if ($shaped) { @('ip', 'netns', 'exec', $Namespace, $dotnet, $pwshDll) } else { @($dotnet, $pwshDll) }
            Write-Host ("[{0:HH:mm:ss}] {1}/{2} {3}: {4} over {5}" -f [DateTime]::Now, $i, $selected.Count, $c.Id, $c.Label, $(if ($shaped) { $c.Link } else { 'unshaped loopback' }))
            $watch = [Diagnostics.Stopwatch]::StartNew()
            & $cmd[0] @($cmd[1..($cmd.Count - 1)] + $cellArgs) 2>&1 | ForEach-Object { Write-Host "    $_" }
            $data = if (Test-Path $out) { Get-Content -Raw $out | ConvertFrom-Json } else { [pscustomobject]@{ HarnessError = "no result file (exit $LASTEXITCODE)" } }
            $entry = [ordered]@{ Id = $c.Id; Row = $c.Row; Label = $c.Label; Link = $(if ($shaped) { $c.Link } else { 'unshaped' }); Qdisc = $qdisc; RequestedRate = $c.RequestedRate; WallSeconds = [math]::Round($watch.Elapsed.TotalSeconds) }
            foreach ($p in $data.PSObject.Properties) { $entry[$p.Name] = $p.Value }
            $results.Add([pscustomobject]$entry)
            $e = $results[-1]
            Write-Host ("    -> {0} converged={1} total={2}s downtime={3}ms wire={4}MiB stream={5}MiB syncs={6} guest rate {7}/{8} p/s {9}" -f
                $e.Status, $e.Converged, $e.TotalSeconds, $e.DowntimeMs, $e.WireMiB, $e.StreamMiB, $e.DirtySyncCount, $e.GuestRateBefore, $e.GuestRateDuring, "$($e.ErrorId)$($e.HarnessError)")
            # Save as we go: a long grid that dies halfway still leaves its rows.
            Save-Results $results $shaped
        }
    }
    finally {
        if ($shaped) { Invoke-Native ip @('netns', 'del', $Namespace) -IgnoreError }
    }
}

# ---- the table -------------------------------------------------------------------------------
function Format-Cell($e) {
    $status = if ($e.HarnessError) { "harness error: $($e.HarnessError -replace '\s+', ' ')" }
    elseif ($e.Status -eq 'Completed' -and $e.TimedOut) { 'paused at timeout' }
    elseif ($e.Status -eq 'Completed') { 'converged' }
    elseif ($e.ErrorId -like 'MigrationTimedOut*') { 'never converges (cancelled at timeout)' }
    else { "$($e.Status) $($e.ErrorId -replace ',.*$', '')" }
    # Native: QEMU's xbzrle-cache 'pages' (pages sent as XBZRLE) lands in CacheHits, and the module's
    # XbzrlePages for Native is bytes / encoding-rate, which is not a page count; show QEMU's pages, marked †.
    $xb = if (-not $e.Compression) { '-' }
    elseif ($e.Compress -eq 'Native') { '{0:N0}† / -' -f $e.Compression.CacheHits }
    else { '{0:N0} / {1:N0}' -f $e.Compression.XbzrlePages, $e.Compression.CacheHits }
    $down = if ($e.Status -eq 'Completed' -and $null -ne $e.DowntimeMs) { '{0:N0}' -f $e.DowntimeMs } else { '-' }
    $rate = if ($null -ne $e.GuestRateBefore) { '{0:N0} / {1:N0}' -f $e.GuestRateBefore, $e.GuestRateDuring } else { '-' }
    # TotalTime as the module reports it; when it is 0 (seen with Delta), our own clock around Move-KvmVM, marked *.
    $total = if ($e.TotalSeconds -gt 0) { '{0:N1}' -f $e.TotalSeconds } elseif ($e.MoveSeconds) { '{0:N1}*' -f $e.MoveSeconds } else { '-' }
    '| {0} {1} | {2} | {3} | {4} | {5} | {6} | {7} | {8} | {9} | {10} ({11:N0}) |' -f $e.Row, $e.Link, $e.Label, $status,
        $total, $down, $e.WireMiB, $e.StreamMiB, $e.DirtySyncCount, $xb, $rate, $e.RequestedRate
}
$table = @(
    '| row, link | mode | result | total s | downtime ms | wire MiB | stream MiB | rounds (dirty syncs) | XBZRLE pages / cache hits | guest pages/s before / during (asked) |'
    '|---|---|---|---|---|---|---|---|---|---|'
    $results | ForEach-Object { Format-Cell $_ }
)
$table | Set-Content (Join-Path $OutDirectory "$Name.md")
$table -join "`n"
