# Move-KvmVM to another host in one command, over PowerShell remoting (SSH) into a namespace host
# (TestHosts.ps1): the matching VM and Receive-KvmVM are started there, the token never shows.
BeforeAll {
    . "$PSScriptRoot/TestHelpers.ps1"
    Import-Module $ModuleUnderTest -Force
    . "$PSScriptRoot/TestHosts.ps1"
    $script:RunDir = Initialize-TestRunDirectory
    $script:H = New-TestHost -Name mv -LinkRate 1gbit
    $script:S = New-TestHostSession -TestHost $H
    # The remote side imports the same module (by name from the package: sshd passes PSModulePath on).
    Invoke-Command -Session $S { Import-Module $using:ModuleUnderTest }

    function Get-RemoteVM([string] $Name) {
        Invoke-Command -Session $S { Get-KvmVM -Name $using:Name -ErrorAction SilentlyContinue } | Select-Object Name, State, SerialLog
    }
}

AfterAll {
    if ($H) { Remove-TestHost $H }
    Get-KvmVM -ErrorAction Ignore | Stop-KvmVM -Force -Confirm:$false -ErrorAction Ignore
    Remove-TestRunDirectory $RunDir
}

Describe 'Move-KvmVM -Session: one command to another host' {
    It 'moves a VM with -Compress <_>: it runs there, its guest goes on, the source is gone here' -ForEach 'Delta', 'None' {
        $name = "host-$($_.ToLower())"
        $null = Start-TestSource -Name $name
        $output = Move-KvmVM $name -Session $S -Compress $_ -Bandwidth 20MB -PassThru -Verbose 4>&1 *>&1
        $result = $output | Where-Object { $_.PSObject.TypeNames -contains 'DeltaMigrate.Engine.Migration.MigrationResult' -or $_.PSObject.TypeNames -contains 'DeltaMigrate.KvmMigrationResult' } | Select-Object -Last 1
        $result.Status | Should -Be 'Completed'
        $result.DestinationState | Should -Be 'running'
        $result.SourceState | Should -Be 'exited'
        $result.DestinationHost | Should -Be $H.Address

        { Get-KvmVM $name -ErrorAction Stop } | Should -Throw -ErrorId 'VMNotFound*' -Because 'the source was removed after the commit'
        $remote = Get-RemoteVM $name
        $remote.State | Should -Be 'running'
        $beat = Get-Heartbeat $remote.SerialLog
        Wait-Until { (Get-Heartbeat $remote.SerialLog) -gt $beat } "the moved guest's heartbeat on the other host"

        # No token in anything the command wrote (a token is 43 base64url characters).
        ($output | Out-String) | Should -Not -Match '(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])'
        Invoke-Command -Session $S { Stop-KvmVM $using:name -Force }
    }

    It 'moves with -Compress <_> -KeepSource -DestinationPaused: the RAM there is identical byte for byte' -ForEach 'Delta', 'Native' {
        $name = "ram-$($_.ToLower())"
        $null = Start-TestSource -Name $name
        $result = Move-KvmVM $name -Session $S -Compress $_ -KeepSource -DestinationPaused -Bandwidth 20MB -MaxDowntime 0.05 -PassThru
        $result.Status | Should -Be 'Completed'
        $result.DestinationState | Should -Be 'paused'
        $result.DirtySyncCount | Should -BeGreaterThan 1 -Because 'pages were sent again while the guest ran'
        $here = Join-Path $RunDir "$name.here.mem"; $there = Join-Path $RunDir "$name.there.mem"
        Save-GuestMemory $name $here
        # pmemsave runs in the other host's QEMU; the file lands on this machine's filesystem all the same.
        Invoke-Command -Session $S { Invoke-KvmQmp -Name $using:name -Command pmemsave -Arguments @{ val = 0; size = 128MB; filename = $using:there } -Confirm:$false } | Out-Null
        Wait-Until { (Test-Path $there) -and (Get-Item $there).Length -eq 128MB } "pmemsave on the other host"
        (Get-FileHash $here).Hash | Should -Be (Get-FileHash $there).Hash -Because 'the destination holds exactly the source RAM'
        Remove-Item $here, $there
        Stop-KvmVM $name -Force
        Invoke-Command -Session $S { Stop-KvmVM $using:name -Force }
    }

    It 'keeps the source with -KeepSource and names the destination with -DestinationName' {
        $null = Start-TestSource -Name keep-src
        $result = Move-KvmVM keep-src -Session $S -DestinationName keep-there -KeepSource -Compress Native -Bandwidth 20MB -PassThru
        $result.Status | Should -Be 'Completed'
        (Get-KvmVM keep-src).State | Should -Be 'postmigrate'
        (Get-RemoteVM keep-there).State | Should -Be 'running'
        Stop-KvmVM keep-src -Force
        Invoke-Command -Session $S { Stop-KvmVM keep-there -Force }
    }

    It 'moves a VM with -DestinationHost, the session opened and closed by the command' {
        $null = Start-TestSource -Name dh-src
        $ssh = @{ UserKnownHostsFile = $H.KnownHostsFile; GlobalKnownHostsFile = '/dev/null'; StrictHostKeyChecking = 'yes'; BatchMode = 'yes'; IdentitiesOnly = 'yes' }
        $before = @(Get-PSSession).Count
        # Meanwhile, every process's command line is read over and over: no token may ever show there.
        $stop = Join-Path $RunDir 'scan.stop'
        $scan = Start-ThreadJob -ArgumentList $stop -ScriptBlock {
            param($StopFile)
            $seen = [Collections.Generic.HashSet[string]]::new(); $scans = 0
            while (-not (Test-Path $StopFile)) {
                foreach ($p in [IO.Directory]::GetDirectories('/proc')) {
                    try { $cmd = [IO.File]::ReadAllText("$p/cmdline") -replace "`0", ' ' } catch { continue }
                    foreach ($m in [regex]::Matches($cmd, '(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])')) { $null = $seen.Add($m.Value) }
                }
                $scans++
            }
            [pscustomobject]@{ Scans = $scans; Tokens = @($seen) }
        }
        $result = Move-KvmVM dh-src -DestinationHost $H.Address -UserName $H.UserName -KeyFilePath $H.KeyFilePath -SshOption $ssh -Bandwidth 20MB -PassThru
        $null = New-Item $stop
        $scanned = $scan | Wait-Job | Receive-Job
        $scanned.Scans | Should -BeGreaterThan 1
        $scanned.Tokens | Should -BeNullOrEmpty -Because 'the token travels only inside the SSH session and the engine'
        $result.Status | Should -Be 'Completed'
        (Get-RemoteVM dh-src).State | Should -Be 'running'
        @(Get-PSSession).Count | Should -Be $before -Because 'the command closes the session it opened'
        Invoke-Command -Session $S { Stop-KvmVM dh-src -Force }
    }

    It 'refuses to guess: -Destination and -Session together is an error' {
        $null = Start-TestDestination -Name both-src
        { Move-KvmVM both-src -Destination 127.0.0.1:1 -Session $S -ErrorAction Stop } |
            Should -Throw -ErrorId 'InvalidDestination,DeltaMigrate.Module.Commands.MoveKvmVMCommand'
        Stop-KvmVM both-src -Force
    }
}
